package sessions_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/memstore"
)

// BenchmarkLoad is the session step of every authenticated request, alone:
// open the reference, read the record (from memory here, as the session
// cache serves it), decrypt and decode it. Tokens of production size (a
// ~1 KB access token, an ID token, claims) so the decryption and decoding
// costs are realistic. cpu-ns/op (the process's CPU time per call, GC
// included) is the figure to compare on a busy machine.
//
//	go test -run '^$' -bench Load -benchmem -count 5 ./sessions/
func BenchmarkLoad(b *testing.B) {
	key := func(n int) []byte {
		k := make([]byte, n)
		_, _ = rand.Read(k)
		return k
	}
	m, err := sessions.NewManager(memstore.New(), sessions.Options{
		KeyPrefix: "bench:",
		Keys:      []sessions.KeyPair{{Hash: key(64), Block: key(32)}},
	})
	if err != nil {
		b.Fatal(err)
	}
	claims, _ := json.Marshal(map[string]any{"sub": "user-1", "name": "A User", "email": "a@example.com", "roles": []string{"admin", "user"}})
	now := time.Now()
	ref, err := m.Create(context.Background(), "spa:web", &sessions.Session{
		Frontend: "web", Subject: "user-1", ProviderSID: "sid-1", Claims: claims,
		IDToken: strings.Repeat("i", 600), AccessToken: strings.Repeat("a", 1000), RefreshToken: strings.Repeat("r", 200),
		TokenType: "Bearer", Expiry: now.Add(time.Hour), TokenObtainedAt: now,
		AbsoluteExpiry: now.Add(12 * time.Hour), IdleTimeout: 30 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		s, err := m.Load(ctx, "spa:web", ref)
		if err != nil {
			b.Fatal(err)
		}
		if len(s.AccessToken) != 1000 {
			b.Fatal("wrong session")
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user+system CPU time this process has used, in ns: on
// a machine shared with other work it moves far less than wall time.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
