// Package faultidp puts switchable faults in front of an OpenID provider,
// for the fault tests and scripts/soak: token requests processed but
// answered late, token requests taken in late (and dropped when their
// client has gone), requests that hang, connections refused, and 503
// answers. It wraps the provider's http.Handler (Handler) and its
// net.Listener (Listener), and counts what reaches the provider, so that a
// test can assert how often a refresh token was presented and how many
// attempts an outage caused, and a soak can tell from each refresh token
// use (Uses) why a token was presented twice.
package faultidp

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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
	// the client gives up (then the provider never sees it) or the mode
	// changes: then the request is handled as the new mode says. A switch
	// to Refuse cuts it unprocessed, as a frozen provider that is then
	// killed never processes what it held; a switch to Normal or Late lets
	// the provider process it, as a provider thawed in time would.
	Hang
	// Refuse closes the listener, so new connections are refused, and
	// cuts open ones; a request still being handled is cut unprocessed.
	Refuse
	// Unavailable answers every request 503 without reaching the provider.
	Unavailable
	// Slow holds token requests for the delay set with SetDelay before
	// the provider sees them, and drops those whose client has gone by
	// then: a provider slow to take requests in, so that a client that
	// dies meanwhile (an instance killed mid-refresh) has not spent its
	// refresh token. Late is the other case: processed, answered late.
	Slow
)

var modeNames = map[Mode]string{Normal: "normal", Late: "late", Hang: "hang", Refuse: "refuse", Unavailable: "unavailable", Slow: "slow"}

func (m Mode) String() string { return modeNames[m] }

// ParseMode reads a mode name (normal, late, hang, refuse, unavailable, slow).
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
	tokenNo  map[string]int // each refresh token's number, in order of first use
	inFlight int            // refresh requests arrived and not yet answered or dropped
	dropped  int            // refresh requests Slow dropped because their client had gone
	log      []Use          // every token request the provider received, in order of arrival
	ln       *Listener      // set by Listener, for Refuse
}

// Use is one token request that reached the provider itself (a request
// that the faults kept from it is not a use). A refresh token is named by a
// number, never by its value, so that a Use may be printed.
type Use struct {
	Grant string // grant_type
	Token int    // refresh_token: the token's number, in order of first use
	N     int    // refresh_token: 1 for the token's first use, 2 for its second...
	// Arrived is when the request reached the wrapper; Mode is the fault
	// in force then.
	Arrived time.Time
	Mode    Mode
	// Released: the request was held by Hang and then handled as
	// ReleasedTo, the mode it was switched to, said.
	Released   bool
	ReleasedTo Mode
	// Took is from arrival to the end of writing the answer (Late's delay
	// included); Status is the provider's status.
	Took   time.Duration
	Status int
	// Cut: the answer could not be delivered whole (write or flush
	// failed), or the client had gone by the time it was written (it gave
	// up waiting, or a switch to Refuse cut the connection). Its sender
	// cannot know whether the provider spent the token.
	Cut bool
}

// New returns Faults in Normal mode with a 1s Late delay.
func New() *Faults {
	return &Faults{delay: time.Second, changed: make(chan struct{}), attempts: map[string]int{}, uses: map[string]int{}, tokenNo: map[string]int{}}
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

// InFlight returns how many refresh requests have arrived and are not yet
// answered or dropped (held by Hang or Slow, processed, or answered late).
func (f *Faults) InFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// Dropped returns how many refresh requests Slow dropped unprocessed
// because their client had gone.
func (f *Faults) Dropped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Uses returns every token request that reached the provider so far, in
// order of arrival.
func (f *Faults) Uses() []Use {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// Handler wraps the provider's handler with the faults.
func (f *Faults) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		grant, refreshToken := tokenRequest(r)
		f.mu.Lock()
		mode, delay, changed := f.mode, f.delay, f.changed
		if grant != "" {
			f.attempts[grant]++
		}
		if grant == "refresh_token" {
			f.inFlight++
			defer func() {
				f.mu.Lock()
				f.inFlight--
				f.mu.Unlock()
			}()
		}
		f.mu.Unlock()

		arrivedIn := mode
		released := false
	held:
		for {
			switch mode {
			case Unavailable:
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"error":"temporarily_unavailable"}`)
				return
			case Refuse:
				// A provider that refuses connections processes nothing:
				// cut the connection without an answer.
				panic(http.ErrAbortHandler)
			case Hang:
				select {
				case <-changed:
					f.mu.Lock()
					mode, delay, changed = f.mode, f.delay, f.changed
					f.mu.Unlock()
					released = true
					continue // handled as the new mode says
				case <-r.Context().Done():
					return
				}
			case Slow:
				if grant == "" {
					break held
				}
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-r.Context().Done():
				}
				t.Stop()
				if r.Context().Err() != nil {
					if grant == "refresh_token" {
						f.mu.Lock()
						f.dropped++
						f.mu.Unlock()
					}
					return
				}
			}
			break
		}
		if grant == "" {
			h.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		u := Use{Grant: grant, Arrived: arrived, Mode: arrivedIn, Released: released, ReleasedTo: mode}
		if grant == "refresh_token" {
			f.uses[refreshToken]++
			u.N = f.uses[refreshToken]
			if u.N == 1 {
				f.tokenNo[refreshToken] = len(f.tokenNo) + 1
			}
			u.Token = f.tokenNo[refreshToken]
		}
		i := len(f.log)
		f.log = append(f.log, u)
		f.mu.Unlock()
		status, cut := f.serve(h, w, r, mode == Late, delay)
		took := time.Since(arrived)
		f.mu.Lock()
		f.log[i].Took, f.log[i].Status, f.log[i].Cut = took, status, cut
		f.mu.Unlock()
	})
}

// serve passes r to the provider, its answer held for delay when late, and
// reports the provider's status and whether the answer was cut.
func (f *Faults) serve(h http.Handler, w http.ResponseWriter, r *http.Request, late bool, delay time.Duration) (status int, cut bool) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if late {
		time.Sleep(delay)
	}
	// Checked before writing: once the answer is out, the client may close
	// the connection at once, which is no cut.
	gone := r.Context().Err() != nil
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, err := w.Write(rec.Body.Bytes())
	if err == nil {
		err = http.NewResponseController(w).Flush()
	}
	return rec.Code, gone || err != nil
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
