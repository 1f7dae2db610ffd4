package config

import (
	"strconv"
	"strings"
)

// Error is one configuration problem. Load and Validate return every problem
// they find, each an *Error, joined with errors.Join; callers that want them
// one by one unwrap the join (interface{ Unwrap() []error }).
type Error struct {
	// File is the file the problem is in: the main config path for server,
	// sessions and inline frontends, the frontend's Source otherwise.
	File string
	// Line is the 1-based line in File: of the key, or for a missing key of
	// the nearest enclosing one that is there. 0 when unknown: for
	// Validate on a Config built in code, which has only values.
	Line int
	// Path is the key path within File, such as "routes[2].upstream"; "" when
	// the problem is with the file as a whole.
	Path string
	// Msg says what is wrong. It never quotes a secret.
	Msg string
}

// Error renders "<file>[:<line>]: <path>: <msg>", leaving out the parts that
// are empty, so every line of `bffgate check` can be pasted into an editor.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
