package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeYAML decodes the one YAML document in data into out (a pointer to a
// struct), strictly: unknown or duplicate keys, values of the wrong shape or
// type, and unset environment variables are all reported, each with file,
// line and key path. ok is false when the file holds no usable document (a
// syntax error, several documents, a top level that is not a mapping), and
// out then holds nothing useful. empty reports a file with no document at all
// (blank or only comments), which leaves out at its zero value.
//
// Environment variables are expanded inside the parsed scalars rather than in
// the raw text: a value is then always taken verbatim, so a secret holding
// "#", quotes, ": " or a newline can neither be cut short nor change the
// document's structure. A plain (unquoted) scalar is re-typed after expansion,
// so `max_body_bytes: ${MAX_BODY}` still decodes as a number. yaml.v3's
// Decoder.KnownFields cannot be combined with that (it does not apply when
// decoding a yaml.Node), so keyChecker does its job, with better messages.
//
// x expands references and enforces what the file may read; decodeYAML fills
// in x.name for a frontend file from its literal name key. info records where
// each key path is and which values were expanded.
func decodeYAML(file string, data []byte, out any, x *expander) (info *fileInfo, errs []error, ok, empty bool) {
	info = &fileInfo{lines: map[string]int{}, expanded: map[string]expansion{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return info, nil, true, true
		}
		return info, []error{yamlError(file, err, nil)}, false, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return info, []error{yamlError(file, err, nil)}, false, false
	default:
		return info, []error{&Error{File: file, Line: extra.Line, Msg: "only one YAML document is allowed per file"}}, false, false
	}
	if len(doc.Content) == 0 {
		return info, nil, true, true
	}
	switch root := doc.Content[0]; {
	case isNull(root):
		return info, nil, true, true
	case root.Kind != yaml.MappingNode:
		return info, []error{&Error{File: file, Line: root.Line, Msg: "must hold a mapping (key: value) at the top, not " + shapeName(root.Kind)}}, false, false
	}

	if x.frontend {
		x.name = literalName(doc.Content[0])
		if x.name != "" {
			x.root = filepath.Join(x.root, x.name)
		}
	}
	errs = expandNode(file, &doc, "", x, info, errs)

	kc := keyChecker{file: file, seen: map[seenKey]bool{}, lines: map[int]string{}}
	kc.walk(&doc, reflect.TypeOf(out).Elem(), "")
	errs = append(errs, kc.errs...)

	if err := doc.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, msg := range te.Errors {
				errs = append(errs, info.hide(typeError(file, msg, kc.lines)))
			}
		} else {
			errs = append(errs, info.hide(yamlError(file, err, kc.lines)))
		}
	}
	// Three passes found these; read them in file order.
	slices.SortStableFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
	return info, errs, true, false
}

func lineOf(err error) int {
	if e, ok := err.(*Error); ok {
		return e.Line
	}
	return 0
}

var (
	yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	scalarRE   = regexp.MustCompile("^cannot unmarshal !!\\w+ (`.*`) into (time.Duration|u?int\\d*|bool)$")
)

// scalarHints rewords yaml.v3's Go-flavoured type errors for the people who
// write the files.
var scalarHints = map[string]string{
	// yaml.v3 deliberately refuses bare numbers for durations.
	"time.Duration": "is not a duration: write a Go duration with a unit, such as 30s, 10m or 12h",
	"bool":          "is not true or false",
}

// yamlError turns a yaml.v3 parse error ("yaml: line 3: ...") into an *Error.
func yamlError(file string, err error, lines map[int]string) *Error {
	return typeError(file, strings.TrimPrefix(err.Error(), "yaml: "), lines)
}

// typeError turns one of yaml.v3's "line N: ..." messages into an *Error,
// recovering the key path from the line where that is unambiguous.
func typeError(file, msg string, lines map[int]string) *Error {
	e := &Error{File: file, Msg: msg}
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Msg = m[2]
	e.Path = lines[e.Line]
	if m := scalarRE.FindStringSubmatch(e.Msg); m != nil {
		hint, ok := scalarHints[m[2]]
		if !ok {
			hint = "is not a whole number"
		}
		e.Msg = m[1] + " " + hint
	}
	return e
}

// expandNode expands references in every scalar under n, keys included, each
// once (an alias is expanded where its anchor is defined), and records in
// info the line of each key path and the text as written of each expanded
// value.
func expandNode(file string, n *yaml.Node, path string, x *expander, info *fileInfo, errs []error) []error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
				info.line(p, c.Line)
			}
			errs = expandNode(file, c, p, x, info, errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			info.line(p, k.Line)
			errs = expandNode(file, k, p, x, info, errs)
			errs = expandNode(file, v, p, x, info, errs)
		}
	case yaml.ScalarNode:
		val, problems := x.expand(n.Value, path)
		for _, p := range problems {
			errs = append(errs, &Error{File: file, Line: n.Line, Path: path, Msg: p})
		}
		if len(problems) > 0 {
			// Decode it as absent, so one mistake is not also reported as a
			// type error; Parse drops Validate's complaints about this key.
			n.Value, n.Tag = "", "!!null"
			return errs
		}
		if val != n.Value {
			info.expanded[path] = expansion{raw: n.Value, value: val}
			n.Value = val
			const literal = yaml.TaggedStyle | yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
			if n.Style&literal == 0 {
				n.Tag = "" // let the decoder resolve it again: ${PORT} may be a number
			}
		}
	}
	return errs
}

// literalName is the value of the top-level name key when it is written
// without references, else "". Expansion in a frontend file depends on it, so
// it cannot itself come from a variable.
func literalName(root *yaml.Node) string {
	if root.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k, v := root.Content[i], root.Content[i+1]; k.Value == "name" && v.Kind == yaml.ScalarNode {
			if strings.Contains(v.Value, "$") || !nameRE.MatchString(v.Value) {
				return ""
			}
			return v.Value
		}
	}
	return ""
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// seenKey lets keyChecker visit an aliased node once per target type, which
// keeps alias bombs and self-referencing anchors harmless.
type seenKey struct {
	n *yaml.Node
	t reflect.Type
}

// keyChecker reports mapping keys that name no struct field (what yaml.v3's
// KnownFields does) with their key path, and records which key path each line
// holds so that yaml.v3's type errors can be given one too.
type keyChecker struct {
	file  string
	errs  []error
	seen  map[seenKey]bool
	lines map[int]string // line -> key path of the scalars on it; "" when several
}

func (k *keyChecker) note(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.Line == 0 {
		return
	}
	if old, ok := k.lines[n.Line]; ok && old != path {
		path = ""
	}
	k.lines[n.Line] = path
}

func (k *keyChecker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			k.walk(c, t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || k.seen[seenKey{n.Alias, t}] {
			return
		}
		k.seen[seenKey{n.Alias, t}] = true
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		k.note(n, path)
	}
	if !k.shapeOK(n, t, path) {
		return
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		k.dropDuplicates(n, path)
		var fields map[string]reflect.Type
		if t.Kind() == reflect.Struct {
			fields = yamlFields(t)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if isMergeKey(key) {
				k.walkMerge(val, t, path)
				continue
			}
			p := joinPath(path, key.Value)
			k.note(key, p)
			if t.Kind() == reflect.Map {
				k.walk(val, t.Elem(), p)
				continue
			}
			ft, ok := fields[key.Value]
			if !ok {
				k.errs = append(k.errs, &Error{File: k.file, Line: key.Line, Path: p, Msg: unknownKey(key.Value, fields)})
				continue
			}
			k.walk(val, ft, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			k.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// shapeOK checks that n is a mapping, list or single value as t needs. When
// it is not, it reports that and replaces n with an empty value of the right
// shape. Nulls become empty values too, silently. Either way yaml.v3 then
// decodes every list element: it drops those it cannot decode, and every
// later index in our messages would be off by one.
func (k *keyChecker) shapeOK(n *yaml.Node, t reflect.Type, path string) bool {
	var want yaml.Kind
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		want = yaml.MappingNode
	case reflect.Slice:
		want = yaml.SequenceNode
	case reflect.Interface:
		return true
	default:
		want = yaml.ScalarNode
	}
	switch {
	case isNull(n):
		if want == yaml.ScalarNode && t.Kind() != reflect.String {
			return true // a zero number or duration; never a list element here
		}
	case n.Kind == want:
		return true
	default:
		k.errs = append(k.errs, &Error{File: k.file, Line: n.Line, Path: path,
			Msg: fmt.Sprintf("must be %s, not %s", shapeName(want), shapeName(n.Kind))})
	}
	empty := yaml.Node{Kind: want, Line: n.Line, Column: n.Column}
	switch {
	case want == yaml.MappingNode:
		empty.Tag = "!!map"
	case want == yaml.SequenceNode:
		empty.Tag = "!!seq"
	case t.Kind() == reflect.String:
		empty.Tag = "!!str"
	default:
		empty.Tag = "!!null"
	}
	*n = empty
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func shapeName(kind yaml.Kind) string {
	switch kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// dropDuplicates reports keys given twice in one mapping and removes the
// later ones; yaml.v3 would instead discard the whole mapping.
func (k *keyChecker) dropDuplicates(n *yaml.Node, path string) {
	first := map[string]int{}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i]
		if key.Kind == yaml.ScalarNode && !isMergeKey(key) {
			if line, dup := first[key.Value]; dup {
				k.errs = append(k.errs, &Error{File: k.file, Line: key.Line, Path: joinPath(path, key.Value),
					Msg: fmt.Sprintf("duplicate key (first at line %d)", line)})
				continue
			}
			first[key.Value] = key.Line
		}
		kept = append(kept, key, n.Content[i+1])
	}
	n.Content = kept
}

// walkMerge checks the value of a "<<" key: a mapping or a list of them,
// merged into the enclosing mapping of type t. Anything else is left for
// yaml.v3 to refuse.
func (k *keyChecker) walkMerge(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.SequenceNode {
		n = n.Alias
	}
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			k.walkMerge(c, t, path)
		}
		return
	}
	if n.Kind == yaml.MappingNode || (n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.MappingNode) {
		k.walk(n, t, path)
	}
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && n.Style == 0 && (n.Tag == "" || n.Tag == "!!merge")
}

// yamlFields maps the YAML keys of struct type t to their field types, named
// the way yaml.v3 names them.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// unknownKey says a key is unknown, suggesting the closest known one when it
// looks like a typo.
func unknownKey(key string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for name := range fields {
		d := editDistance(strings.ToLower(key), name)
		if d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	if best != "" && bestDist <= len(key)/2 {
		return fmt.Sprintf("unknown key (did you mean %q?)", best)
	}
	return "unknown key"
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
