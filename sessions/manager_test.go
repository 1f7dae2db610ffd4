package sessions

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// nopStore satisfies Store for tests that never reach it.
type nopStore struct{ Store }

func TestNewManagerOptions(t *testing.T) {
	good := KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	tests := []struct {
		name    string
		store   Store
		opts    Options
		wantErr string // "" = ok
	}{
		{"ok", nopStore{}, Options{Keys: []KeyPair{good}}, ""},
		{"ok 64-byte hash, two pairs", nopStore{}, Options{Keys: []KeyPair{{Hash: make([]byte, 64), Block: make([]byte, 32)}, good}}, ""},
		{"nil store", nil, Options{Keys: []KeyPair{good}}, "nil store"},
		{"no keys", nopStore{}, Options{}, "at least one"},
		{"short hash", nopStore{}, Options{Keys: []KeyPair{good, {Hash: make([]byte, 16), Block: make([]byte, 32)}}}, "keys[1].hash"},
		{"aes-128 block", nopStore{}, Options{Keys: []KeyPair{{Hash: make([]byte, 32), Block: make([]byte, 16)}}}, "keys[0].block"},
		{"no block", nopStore{}, Options{Keys: []KeyPair{{Hash: make([]byte, 32)}}}, "keys[0].block"},
		{"negative touch", nopStore{}, Options{Keys: []KeyPair{good}, TouchInterval: -time.Second}, "TouchInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewManager(tt.store, tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewManager: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewManager = %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestTouchInterval(t *testing.T) {
	tests := []struct {
		name  string
		touch time.Duration
		idle  time.Duration
		want  time.Duration
	}{
		{"default is a tenth", 0, 5 * time.Minute, 30 * time.Second},
		{"default at most a minute", 0, 30 * time.Minute, time.Minute},
		{"default at least a second", 0, 5 * time.Second, time.Second},
		{"never more than half the window", 0, time.Second, 500 * time.Millisecond},
		{"explicit", 10 * time.Second, 30 * time.Minute, 10 * time.Second},
		{"explicit capped at half the window", time.Hour, 30 * time.Minute, 15 * time.Minute},
		{"no idle window", 0, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{touch: tt.touch}
			if got := m.touchInterval(&Session{IdleTimeout: tt.idle}); got != tt.want {
				t.Fatalf("touchInterval = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		s      Session
		want   time.Duration
		wantOK bool
	}{
		{"idle only", Session{IdleTimeout: time.Hour}, time.Hour, true},
		{"absolute only", Session{AbsoluteExpiry: now.Add(2 * time.Hour)}, 2 * time.Hour, true},
		{"idle bounds", Session{IdleTimeout: time.Hour, AbsoluteExpiry: now.Add(2 * time.Hour)}, time.Hour, true},
		{"absolute bounds", Session{IdleTimeout: time.Hour, AbsoluteExpiry: now.Add(time.Minute)}, time.Minute, true},
		{"past absolute", Session{IdleTimeout: time.Hour, AbsoluteExpiry: now.Add(-time.Minute)}, -time.Minute, true},
		{"neither", Session{}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := window(&tt.s, now)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("window = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestPadding(t *testing.T) {
	for _, s := range []string{"", "QQ", "QUI", "QUJD", "QUJDRA"} {
		if got := trimPad(addPad(s)); got != s {
			t.Errorf("trimPad(addPad(%q)) = %q", s, got)
		}
		if len(addPad(s))%4 != 0 {
			t.Errorf("addPad(%q) = %q: not a multiple of 4", s, addPad(s))
		}
	}
}

// TestLoadRejectsBeforeStore checks that a bad reference never costs a store
// round trip: nopStore would panic if reached.
func TestLoadRejectsBeforeStore(t *testing.T) {
	m, err := NewManager(nopStore{}, Options{Keys: []KeyPair{{Hash: make([]byte, 32), Block: make([]byte, 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(context.Background(), "session:web", "garbage"); !errors.Is(err, ErrInvalidRef) {
		t.Fatalf("Load(garbage) = %v", err)
	}
}
