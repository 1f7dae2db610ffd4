package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/cache"
	"github.com/bffgate/bffgate/sessions/redisstore"
)

const sessionsUsage = `usage:
  bffgate sessions list   -config FILE [--frontend F] [--sub S] [--sid S]
  bffgate sessions revoke -config FILE (--frontend F | --sub S | --sid S)... | --all

Filters combine: every one given must match. --sub or --sid with --frontend
reads that frontend's index; without it every session record is scanned.
Needs sessions.store: redis (a memory store lives inside the serving process).
`

// shortID is how many characters of a session id list prints.
const shortID = 12

// cmdSessions is the operator's view of the live sessions in the store
// (list) and their revocation (revoke).
func cmdSessions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "bffgate sessions: missing subcommand (list or revoke)\n"+sessionsUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "revoke":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, sessionsUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "bffgate sessions: unknown subcommand %q\n%s", sub, sessionsUsage)
		return exitUsage
	}

	fs := flag.NewFlagSet("sessions "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sessionsUsage) }
	path := fs.String("config", defaultCfg, "configuration file")
	var f sessions.Filter
	fs.StringVar(&f.Frontend, "frontend", "", "only sessions of this frontend")
	fs.StringVar(&f.Subject, "sub", "", "only sessions of this subject (ID token sub)")
	fs.StringVar(&f.ProviderSID, "sid", "", "only sessions of this provider session (ID token sid)")
	all := false
	if sub == "revoke" {
		fs.BoolVar(&all, "all", false, "revoke every session (no filter)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bffgate sessions %s: unexpected argument %q\n", sub, fs.Arg(0))
		return exitUsage
	}
	if sub == "revoke" {
		switch {
		case f == sessions.Filter{} && !all:
			fmt.Fprint(stderr, "bffgate sessions revoke: give --frontend, --sub or --sid; --all revokes every session\n")
			return exitUsage
		case f != sessions.Filter{} && all:
			fmt.Fprint(stderr, "bffgate sessions revoke: --all takes no --frontend, --sub or --sid\n")
			return exitUsage
		}
	}

	cfg, err := config.Load(*path)
	if err != nil {
		printProblems(stderr, err)
		return exitFail
	}
	if cfg.Sessions.Store != "redis" {
		fmt.Fprintf(stderr, "bffgate sessions: %s: sessions.store is %q: only a redis store can be listed or revoked from outside; a memory store lives inside the serving process (restart it to end every session)\n",
			cfg.Path, cfg.Sessions.Store)
		return exitFail
	}
	if f.Frontend != "" && !slices.ContainsFunc(cfg.Frontends, func(fe config.Frontend) bool { return fe.Name == f.Frontend }) {
		// Sessions outlive a frontend's removal from the config: still look.
		fmt.Fprintf(stderr, "bffgate sessions: note: frontend %q is not in %s\n", f.Frontend, cfg.Path)
	}
	keys := make([]sessions.KeyPair, 0, len(cfg.Sessions.CookieKeys))
	for i, k := range cfg.Sessions.CookieKeys {
		hash, block, err := k.Decode()
		if err != nil {
			fmt.Fprintf(stderr, "bffgate sessions: %s: sessions.cookie_keys[%d]: %v\n", cfg.Path, i, err)
			return exitFail
		}
		keys = append(keys, sessions.KeyPair{Hash: hash, Block: block})
	}
	setLibraryLevel(ctx, logLevel(cfg.Server.LogLevel))
	client, err := gateway.NewRedisClient(cfg.Sessions.Redis)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions: %s: sessions.redis: %v\n", cfg.Path, err)
		return exitFail
	}
	defer client.Close()
	// Every revocation is published, so that serving instances drop the
	// session from their in-process caches at once.
	prefix := cfg.Sessions.Redis.KeyPrefix
	store, err := cache.NewPublisher(redisstore.New(client), client, cache.Options{
		Prefix: sessions.RecordKeyPrefix(prefix), Channel: cache.Channel(prefix),
	})
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions: %v\n", err)
		return exitFail
	}
	// The Manager needs the keys to exist, not to open anything: list and
	// revoke read only the records' clear metadata.
	m, err := sessions.NewManager(store, sessions.Options{KeyPrefix: prefix, Keys: keys})
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions: %v\n", err)
		return exitFail
	}

	if sub == "revoke" {
		// Each ended session is an audit event, like the gateway's own.
		n, err := m.RevokeEach(ctx, f, revokedEvent(ctx, cfg, stderr))
		if err != nil {
			fmt.Fprintf(stderr, "bffgate sessions revoke: %v (%d sessions ended before the failure)\n", err, n)
			return exitFail
		}
		fmt.Fprintf(stdout, "%d %s revoked\n", n, countNoun(n, "session", "sessions"))
		return exitOK
	}
	found, err := m.Find(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions list: %v\n", err)
		return exitFail
	}
	printSessions(stdout, found)
	return exitOK
}

// printSessions writes one line per session and a count. Ids are shortened:
// enough to tell sessions apart, and an id is no credential anyway (opening a
// session takes the sealed cookie or handle).
func printSessions(w io.Writer, found []sessions.Found) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFRONTEND\tSUB\tSID\tCREATED\tEXPIRES IN")
	for _, s := range found {
		id := s.ID
		if len(id) > shortID {
			id = id[:shortID] + "…"
		}
		created := "-"
		if !s.Meta.CreatedAt.IsZero() {
			created = s.Meta.CreatedAt.UTC().Format(time.RFC3339)
		}
		expires := "-"
		if s.TTL > 0 {
			expires = s.TTL.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, printable(s.Meta.Frontend), printable(s.Meta.Subject),
			printable(s.Meta.ProviderSID), created, expires)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d %s (ids shortened to %d characters)\n", len(found), countNoun(len(found), "session", "sessions"), shortID)
}

// printable prints a value that came from the provider: "-" when empty, quoted
// when it holds anything that could disturb a terminal or the columns.
func printable(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func countNoun(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
