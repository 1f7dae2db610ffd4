package main

import (
	"bytes"
	"sync"
)

// syncBuffer is a bytes.Buffer the test can read while run's goroutines
// write to it (stdout, stderr of an in-process serve or demo).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
