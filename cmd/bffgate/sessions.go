package main

import (
	"context"
	"encoding/json"
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
  bffgate sessions list   -config FILE [--frontend F] [--sub S] [--sid S] [--id ID] [--json]
  bffgate sessions revoke -config FILE (--frontend F | --sub S | --sid S | --id ID)... | --all

Filters combine: every one given must match. --sub or --sid reads the index
of --frontend, or of each frontend in the config (a frontend since removed
from it needs --frontend); otherwise the session records are scanned (and
list prints them as it finds them, unsorted, without holding them all).

Three different ids:
  --id   the gateway's session id: the ID column of "sessions list" (22
         characters). A unique prefix is enough; revoke refuses a prefix that
         matches several sessions and lists them.
  --sid  the identity provider's session id: the "sid" claim of the ID token
         (SID column), shared by every frontend the user logged in to there.
  bff.sid, shown by GET M/bff/user, is neither: it is the value a GET
         M/bff/logout?sid= must carry, derived from the session id so that
         the page never learns the id itself. It cannot be used here.
--sub is the subject: the "sub" claim of the ID token (SUB column). NAME /
EMAIL come from the ID token's name (or preferred_username) and email.

list --json prints a JSON array, one object per session.
Needs sessions.store: redis (a memory store lives inside the serving process).
`

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
	fs.StringVar(&f.IDPrefix, "id", "", "only the session whose id (or a unique prefix of it) is this (ID column of list)")
	asJSON := false
	if sub == "list" {
		fs.BoolVar(&asJSON, "json", false, "print a JSON array")
	}
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
	if f.IDPrefix != "" && strings.Trim(f.IDPrefix, idAlphabet) != "" {
		fmt.Fprintf(stderr, "bffgate sessions %s: --id %q: a session id has only the characters A-Z a-z 0-9 - _ (the ID column of sessions list)\n", sub, f.IDPrefix)
		return exitUsage
	}
	if sub == "revoke" {
		switch {
		case f == sessions.Filter{} && !all:
			fmt.Fprint(stderr, "bffgate sessions revoke: give --frontend, --sub, --sid or --id; --all revokes every session\n")
			return exitUsage
		case f != sessions.Filter{} && all:
			fmt.Fprint(stderr, "bffgate sessions revoke: --all takes no --frontend, --sub, --sid or --id\n")
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
		audit := revokedEvent(ctx, cfg, stderr)
		if f.IDPrefix != "" {
			return revokeByID(ctx, m, f, audit, stdout, stderr)
		}
		// Each ended session is an audit event, like the gateway's own.
		n := 0
		err := eachFilter(f, cfg, func(f sessions.Filter) error {
			k, err := m.RevokeEach(ctx, f, audit)
			n += k
			return err
		})
		if err != nil {
			fmt.Fprintf(stderr, "bffgate sessions revoke: %v (%d sessions ended before the failure)\n", err, n)
			return exitFail
		}
		fmt.Fprintf(stdout, "%d %s revoked\n", n, countNoun(n, "session", "sessions"))
		return exitOK
	}
	p := newSessionPrinter(stdout, asJSON)
	err = eachFilter(f, cfg, func(f sessions.Filter) error { return m.Each(ctx, f, p.print) })
	p.close()
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions list: %v\n", err)
		return exitFail
	}
	return exitOK
}

// eachFilter calls fn with f, or, when f names a subject or provider sid
// but no frontend, once per configured frontend: each call then reads that
// frontend's index instead of every session record (milliseconds instead of
// a walk of the whole store). A frontend removed from the config is reached
// with --frontend.
func eachFilter(f sessions.Filter, cfg *config.Config, fn func(sessions.Filter) error) error {
	if f.Frontend != "" || f.IDPrefix != "" || (f.Subject == "" && f.ProviderSID == "") || len(cfg.Frontends) == 0 {
		return fn(f)
	}
	for _, fe := range cfg.Frontends {
		g := f
		g.Frontend = fe.Name
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// idAlphabet is base64url's: a session id is 16 random bytes in it.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// maxListedMatches bounds the matches an ambiguous --id lists.
const maxListedMatches = 10

var errTooMany = errors.New("too many matches")

// revokeByID ends the one session whose id starts with f.IDPrefix (and that
// the other filters select). No match or several is an error: an operator
// revoking by id means one session, and a prefix that turns out to match
// more must not end them all.
func revokeByID(ctx context.Context, m *sessions.Manager, f sessions.Filter, audit func(sessions.Found), stdout, stderr io.Writer) int {
	var matches []sessions.Found
	err := m.Each(ctx, f, func(s sessions.Found) error {
		if !slices.ContainsFunc(matches, func(o sessions.Found) bool { return o.ID == s.ID }) {
			matches = append(matches, s)
		}
		if len(matches) > maxListedMatches {
			return errTooMany
		}
		return nil
	})
	if err != nil && !errors.Is(err, errTooMany) {
		fmt.Fprintf(stderr, "bffgate sessions revoke: %v\n", err)
		return exitFail
	}
	switch {
	case len(matches) == 0:
		fmt.Fprintf(stderr, "bffgate sessions revoke: no live session has an id starting with %q (see sessions list)\n", f.IDPrefix)
		return exitFail
	case len(matches) > 1:
		more := ""
		if errors.Is(err, errTooMany) {
			matches, more = matches[:maxListedMatches], "\n  ... and more"
		}
		lines := make([]string, len(matches))
		for i, s := range matches {
			lines[i] = "  " + s.ID + "  " + printable(s.Meta.Frontend) + "  " + printable(s.Meta.Subject)
		}
		fmt.Fprintf(stderr, "bffgate sessions revoke: --id %q matches several sessions; give more of the id:\n%s%s\n", f.IDPrefix, strings.Join(lines, "\n"), more)
		return exitFail
	}
	n, err := m.RevokeEach(ctx, sessions.Filter{IDPrefix: matches[0].ID}, audit)
	if err != nil {
		fmt.Fprintf(stderr, "bffgate sessions revoke: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%d %s revoked\n", n, countNoun(n, "session", "sessions"))
	return exitOK
}

// sessionPrinter writes sessions as they come: a table (flushed every
// flushEvery lines, so memory stays bounded) or a JSON array.
type sessionPrinter struct {
	w     io.Writer
	tw    *tabwriter.Writer
	enc   *json.Encoder
	n     int
	first bool
}

const flushEvery = 500

func newSessionPrinter(w io.Writer, asJSON bool) *sessionPrinter {
	p := &sessionPrinter{w: w, first: true}
	if asJSON {
		p.enc = json.NewEncoder(w)
		fmt.Fprint(w, "[")
		return p
	}
	p.tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(p.tw, "ID\tFRONTEND\tSUB\tNAME / EMAIL\tSID\tCREATED\tEXPIRES IN")
	return p
}

// jsonSession is one session in list --json.
type jsonSession struct {
	ID             string     `json:"id"`
	Frontend       string     `json:"frontend"`
	Subject        string     `json:"sub"`
	ProviderSID    string     `json:"sid,omitempty"`
	Name           string     `json:"name,omitempty"`
	Email          string     `json:"email,omitempty"`
	CreatedAt      *time.Time `json:"created_at,omitempty"`
	AbsoluteExpiry *time.Time `json:"absolute_expiry,omitempty"`
	ExpiresIn      int64      `json:"expires_in"` // seconds until the idle or absolute timeout; 0 unknown
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (p *sessionPrinter) print(s sessions.Found) error {
	p.n++
	if p.enc != nil {
		if !p.first {
			fmt.Fprint(p.w, ",")
		}
		p.first = false
		fmt.Fprint(p.w, "\n")
		return p.enc.Encode(jsonSession{
			ID: s.ID, Frontend: s.Meta.Frontend, Subject: s.Meta.Subject, ProviderSID: s.Meta.ProviderSID,
			Name: s.Meta.Name, Email: s.Meta.Email,
			CreatedAt: timePtr(s.Meta.CreatedAt), AbsoluteExpiry: timePtr(s.Meta.AbsoluteExpiry),
			ExpiresIn: int64(s.TTL.Round(time.Second) / time.Second),
		})
	}
	created := "-"
	if !s.Meta.CreatedAt.IsZero() {
		created = s.Meta.CreatedAt.UTC().Format(time.RFC3339)
	}
	expires := "-"
	if s.TTL > 0 {
		expires = s.TTL.Round(time.Second).String()
	}
	who := s.Meta.Name
	if s.Meta.Email != "" {
		who = strings.TrimSpace(who + " <" + s.Meta.Email + ">")
	}
	fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, printable(s.Meta.Frontend), printable(s.Meta.Subject),
		printableText(who), printable(s.Meta.ProviderSID), created, expires)
	if p.n%flushEvery == 0 {
		return p.tw.Flush()
	}
	return nil
}

// close ends the output: the JSON array, or the table and a count line.
func (p *sessionPrinter) close() {
	if p.enc != nil {
		if !p.first {
			fmt.Fprint(p.w, "\n")
		}
		fmt.Fprintln(p.w, "]")
		return
	}
	_ = p.tw.Flush()
	fmt.Fprintf(p.w, "%d %s\n", p.n, countNoun(p.n, "session", "sessions"))
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

// printableText is printable for a value that may hold plain spaces (a
// name): quoted only for other white space and control characters.
func printableText(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && (!unicode.IsPrint(r) || unicode.IsSpace(r)) }) {
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
