// Package faultidp puts switchable faults in front of an OpenID provider,
// for the fault tests and scripts/soak: token requests processed but
// answered late, requests that hang, connections refused, and 503 answers.
// It wraps the provider's http.Handler (Handler) and its net.Listener
// (Listener), and counts what reaches the provider, so that a test can
// assert how often a refresh token was presented and how many attempts an
// outage caused.
package faultidp

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Mode is the fault in force.
type Mode int

const (
	// Normal passes every request through.
	Normal Mode = iota
	// Late lets token requests reach the provider, which processes them
	// (a refresh token is spent and rotated), and answers them only after
	// the delay set with SetDelay, whether or not the client still waits.
	Late
	// Hang holds every request unanswered, like a frozen process, until
	// the mode changes (then it goes on, if its client still waits) or
	// the client gives up (then the provider never sees it).
	Hang
	// Refuse closes the listener, so new connections are refused, and
	// cuts open ones.
	Refuse
	// Unavailable answers every request 503 without reaching the provider.
	Unavailable
)

var modeNames = map[Mode]string{Normal: "normal", Late: "late", Hang: "hang", Refuse: "refuse", Unavailable: "unavailable"}

func (m Mode) String() string { return modeNames[m] }

// ParseMode reads a mode name (normal, late, hang, refuse, unavailable).
func ParseMode(s string) (Mode, bool) {
	for m, n := range modeNames {
		if n == s {
			return m, true
		}
	}
	return Normal, false
}

// Faults is one set of switches; the zero value is not usable, use New.
type Faults struct {
	mu       sync.Mutex
	mode     Mode
	delay    time.Duration
	changed  chan struct{}  // closed and replaced on every mode change
	attempts map[string]int // token requests that reached the wrapper, by grant type
	uses     map[string]int // refresh tokens the provider itself received
	ln       *Listener      // set by Listener, for Refuse
}

// New returns Faults in Normal mode with a 1s Late delay.
func New() *Faults {
	return &Faults{delay: time.Second, changed: make(chan struct{}), attempts: map[string]int{}, uses: map[string]int{}}
}

// SetMode switches the fault; Refuse closes the listener, any other mode
// listens again.
func (f *Faults) SetMode(m Mode) error {
	f.mu.Lock()
	f.mode = m
	close(f.changed)
	f.changed = make(chan struct{})
	ln := f.ln
	f.mu.Unlock()
	if ln == nil {
		return nil
	}
	if m == Refuse {
		ln.refuse()
		return nil
	}
	return ln.resume()
}

// Mode returns the fault in force.
func (f *Faults) Mode() Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}

// SetDelay sets how late Late answers.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Attempts returns how many token requests of grant type grant arrived
// (whatever the fault did with them), refused connections excepted.
func (f *Faults) Attempts(grant string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[grant]
}

// MaxRefreshTokenUses returns the most times the provider received one
// same refresh token: 1 when every rotation was used once.
func (f *Faults) MaxRefreshTokenUses() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.uses {
		n = max(n, c)
	}
	return n
}

// Handler wraps the provider's handler with the faults.
func (f *Faults) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		grant, refreshToken := tokenRequest(r)
		f.mu.Lock()
		mode, delay, changed := f.mode, f.delay, f.changed
		if grant != "" {
			f.attempts[grant]++
		}
		f.mu.Unlock()

		switch mode {
		case Unavailable:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"temporarily_unavailable"}`)
			return
		case Hang, Refuse:
			select {
			case <-changed:
			case <-r.Context().Done():
				return
			}
		}
		if grant == "refresh_token" {
			f.mu.Lock()
			f.uses[refreshToken]++
			f.mu.Unlock()
		}
		if mode == Late && grant != "" {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			time.Sleep(delay)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenRequest returns the grant type (and refresh token) of a token
// request, "" for any other request; the body is left readable.
func tokenRequest(r *http.Request) (grant, refreshToken string) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return "", ""
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	return form.Get("grant_type"), form.Get("refresh_token")
}

// Listener wraps ln so that Refuse closes it (connections are refused)
// and another mode opens it again on the same address.
func (f *Faults) Listener(ln net.Listener) *Listener {
	l := &Listener{addr: ln.Addr(), ln: ln, conns: map[net.Conn]struct{}{}, open: make(chan struct{})}
	close(l.open)
	f.mu.Lock()
	f.ln = l
	f.mu.Unlock()
	return l
}

// Listener is a net.Listener that can stop listening and start again.
type Listener struct {
	addr net.Addr

	mu     sync.Mutex
	ln     net.Listener  // nil while refusing
	open   chan struct{} // closed while listening
	conns  map[net.Conn]struct{}
	closed bool
}

// Accept waits while refusing, then accepts on the current listener.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		ln, open, closed := l.ln, l.open, l.closed
		l.mu.Unlock()
		if closed {
			return nil, net.ErrClosed
		}
		if ln == nil {
			<-open
			continue
		}
		c, err := ln.Accept()
		if err != nil {
			l.mu.Lock()
			replaced := l.ln != ln && !l.closed
			l.mu.Unlock()
			if replaced {
				continue // closed by refuse: wait for resume
			}
			return nil, err
		}
		tc := &trackedConn{Conn: c, l: l}
		l.mu.Lock()
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

func (l *Listener) refuse() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil || l.closed {
		return
	}
	_ = l.ln.Close()
	l.ln = nil
	l.open = make(chan struct{})
	for c := range l.conns {
		_ = c.(*trackedConn).Conn.Close()
	}
}

func (l *Listener) resume() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil || l.closed {
		return nil
	}
	ln, err := net.Listen(l.addr.Network(), l.addr.String())
	if err != nil {
		return err
	}
	l.ln = ln
	close(l.open)
	return nil
}

// Close stops listening for good.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.ln == nil {
		close(l.open)
		return nil
	}
	return l.ln.Close()
}

// Addr is the address, the same while refusing.
func (l *Listener) Addr() net.Addr { return l.addr }

type trackedConn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
