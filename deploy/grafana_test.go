package deploy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
)

const dashboardFile = "grafana/bffgate-dashboard.json"

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// scrapedMetricNames runs a gateway (memory store, one frontend), sends it
// requests that touch every kind of metric (a route to an upstream, an
// unauthenticated call, a readiness check of the store) and returns the
// metric names its /metrics exposes.
func scrapedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	cfg := &config.Config{
		Server:   config.Server{PublicURL: "http://127.0.0.1:8080"},
		Sessions: config.Sessions{Store: "memory"},
		Frontends: []config.Frontend{{Name: "web", Mount: "/web",
			OIDC: config.OIDC{Issuer: "http://127.0.0.1:1", ClientID: "c", ClientSecret: "s"},
			Routes: []config.Route{
				{Prefix: "/public", Upstream: up.URL, Token: config.TokenNone},
				{Prefix: "/api", Upstream: up.URL},
			}}},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := httptest.NewServer(gw.Handler(true))
	defer srv.Close()
	for _, p := range []string{"/web/public/x", "/web/api/x", "/readyz"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(string(body), -1) {
		names[m[1]] = true
		if m[2] == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	return names
}

// Every metric the dashboard's queries (and variables) use is one the
// gateway exports, and the dashboard covers the panels.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q", d.Title, d.UID)
	}
	exported := scrapedMetricNames(t)
	if len(exported) < 10 {
		t.Fatalf("only %d metric names scraped: %v", len(exported), exported)
	}
	metricRe := regexp.MustCompile(`\bbffgate_[a-z0-9_]+`)
	used := map[string]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	for _, e := range exprs {
		for _, m := range metricRe.FindAllString(e, -1) {
			used[m] = true
			if !exported[m] {
				t.Errorf("the dashboard queries %s, which the gateway does not export (query: %s)", m, e)
			}
		}
	}
	for _, want := range []string{
		"bffgate_http_requests_total", "bffgate_http_request_duration_seconds_bucket",
		"bffgate_upstream_request_duration_seconds_bucket", "bffgate_upstream_responses_total",
		"bffgate_logins_started_total", "bffgate_logins_succeeded_total", "bffgate_logins_failed_total",
		"bffgate_token_refreshes_total", "bffgate_sessions_created_total", "bffgate_sessions_ended_total",
		"bffgate_session_store_operations_total", "bffgate_backchannel_logouts_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}
