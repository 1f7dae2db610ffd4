package config

import (
	"strconv"
	"strings"
)

// fileInfo is what decoding learnt about one file that the decoded values no
// longer carry: the line of each key path, for messages, and which values
// came from a variable or a file, so that no message and no listing shows
// them (SPEC section 4: `bffgate check` never prints such a value).
type fileInfo struct {
	lines    map[string]int
	expanded map[string]expansion
}

// expansion is one scalar whose text had references in it.
type expansion struct {
	raw   string // as written in the file, such as "${WEB_CLIENT_SECRET}"
	value string // after expansion
}

func (fi *fileInfo) line(path string, line int) {
	if _, ok := fi.lines[path]; !ok && line > 0 {
		fi.lines[path] = line
	}
}

// lineOf is the line of path, or of its nearest ancestor that has one (a
// missing key is reported at the mapping that should hold it); 0 if none.
func (fi *fileInfo) lineOf(path string) int {
	if fi == nil {
		return 0
	}
	for p := path; p != ""; {
		if l, ok := fi.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// hide replaces, in a decoder message about an expanded value, that value
// with the text as written.
func (fi *fileInfo) hide(e *Error) *Error {
	if x, ok := fi.expanded[e.Path]; ok && x.value != "" {
		e.Msg = strings.ReplaceAll(e.Msg, x.value, x.raw)
	}
	return e
}

// show quotes value, the value at path, for a message or listing. A value
// that came from a variable or a file (even once normalised by
// ApplyDefaults) is shown as written, such as
// "${ORDERS_URL}" (value hidden), so that check output can be pasted into a
// ticket or a CI log without leaking it.
func (fi *fileInfo) show(path, value string) string {
	if fi != nil {
		if x, ok := fi.expanded[path]; ok {
			return strconv.Quote(x.raw) + " (value hidden)"
		}
	}
	return strconv.Quote(value)
}

// plain is show without quotes, for listings.
func (fi *fileInfo) plain(path, value string) string {
	if fi != nil {
		if x, ok := fi.expanded[path]; ok {
			return x.raw
		}
	}
	return value
}

// fromRef reports whether the value at path came from a variable or a file.
func (fi *fileInfo) fromRef(path string) bool {
	if fi == nil {
		return false
	}
	_, ok := fi.expanded[path]
	return ok
}

// minScrub is the shortest expanded value scrub looks for: long enough for
// any secret, short enough that it does not garble messages by replacing
// common words.
const minScrub = 8

// scrub replaces, in e's message, any value that came from a variable or a
// file (in any file: messages about one frontend may name another's mount or
// name) with its text as written. Messages quote values through show, which
// hides them; this catches the ones that print values as part of a sentence.
func (c *Config) scrub(e *Error) {
	for _, fi := range c.src {
		for _, x := range fi.expanded {
			if len(x.value) >= minScrub && strings.Contains(e.Msg, x.value) {
				e.Msg = strings.ReplaceAll(e.Msg, x.value, x.raw)
			}
		}
	}
}
