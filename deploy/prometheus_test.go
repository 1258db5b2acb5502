package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/sidecar"
)

// scrape is one /metrics answer: the families by name (with their TYPE)
// and every sample line.
type scrape struct {
	types   map[string]string
	samples []sample
}

type sample struct {
	name   string
	labels map[string]string
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)

func parseScrape(text string) scrape {
	s := scrape{types: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(strings.Fields(line)[0], "{")
		if i := strings.IndexByte(line, '{'); i >= 0 && i == len(name) {
			rest = line[i:strings.LastIndexByte(line, '}')]
		}
		sm := sample{name: name, labels: map[string]string{}}
		for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
			sm.labels[m[1]] = m[3]
		}
		s.samples = append(s.samples, sm)
	}
	return s
}

// family returns the family a sample name belongs to (histograms and
// summaries add suffixes).
func (s scrape) family(name string) (string, bool) {
	if _, ok := s.types[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if _, ok := s.types[base]; ok {
				return base, true
			}
		}
	}
	return "", false
}

// startDaemon runs a daemon in embedded mode with every kind of metric:
// a registered service, a config mapping with on_change, and locks (always).
func startDaemon(t *testing.T) (httpAddr string) {
	t.Helper()
	dir := t.TempDir()
	cfg := sidecar.Defaults()
	cfg.Name = "metrics-test"
	cfg.DataDir = dir
	cfg.Embedded.ListenClientURLs = []string{freeURL(t)}
	cfg.Embedded.ListenPeerURLs = []string{freeURL(t)}
	cfg.Service = sidecar.Defaults().Service
	cfg.Service.Name, cfg.Service.Address, cfg.Service.Port = "orders", "127.0.0.1", 8080
	cfg.Config = []sidecar.MappingConfig{{Prefix: "/config/orders/", Dir: t.TempDir(),
		OnChange: sidecar.OnChangeConfig{Command: []string{"true"}}}}
	cfg.API.Socket = filepath.Join(etcdtest.SocketDir(t), "s.sock")
	cfg.API.HTTP = fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t))
	d, err := sidecar.New(cfg, (&etcdtest.LogBuffer{}).Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon ended before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("daemon not ready within 60s")
	}
	return cfg.API.HTTP
}

func getMetrics(addr string) (scrape, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return scrape{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return parseScrape(string(b)), err
}

// selectorRE finds the series selectors of a PromQL expression: a name
// not followed by "(" (a function), with its optional {matchers}.
var selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\(?)`)

var promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}

// selectors returns the metric names of expr, each with its matchers.
func selectors(expr string) map[string][][]string {
	expr = regexp.MustCompile(`\[[^\]]*\]|"(?:[^"\\]|\\.)*"`).ReplaceAllStringFunc(expr, func(s string) string {
		if s[0] == '[' {
			return ""
		}
		return s // strings stay: they sit inside {} and are matched there
	})
	out := map[string][][]string{}
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		if m[3] == "(" || slices.Contains(promqlWords, m[1]) {
			continue
		}
		out[m[1]] = append(out[m[1]], nil)
		for _, lm := range labelRE.FindAllStringSubmatch(m[2], -1) {
			out[m[1]][len(out[m[1]])-1] = append(out[m[1]][len(out[m[1]])-1], lm[1], lm[2], lm[3])
		}
	}
	return out
}

// metricsOf waits until the daemon's /metrics has every family in want
// (the gRPC client's appear with the first calls), and returns it.
func metricsOf(t *testing.T, addr string, want []string) scrape {
	t.Helper()
	var s scrape
	etcdtest.Eventually(t, 20*time.Second, "every metric on /metrics", func() (err error) {
		if s, err = getMetrics(addr); err != nil {
			return err
		}
		for _, name := range want {
			if _, ok := s.family(name); !ok {
				return fmt.Errorf("no %s", name)
			}
		}
		return nil
	})
	return s
}

// documented returns the metric names docs/metrics.md lists (in
// backquotes at the start of a table row), and of them those that are
// exported from the start (not those whose row says it "appears with the
// first" event).
func documented(t *testing.T) (names, always []string) {
	t.Helper()
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_:][a-z0-9_:]*)`.*$").FindAllStringSubmatch(repoFile(t, "../docs/metrics.md"), -1) {
		names = append(names, m[1])
		if !strings.Contains(m[0], "appears with the first") {
			always = append(always, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("docs/metrics.md lists no metric")
	}
	return names, always
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			For    string            `yaml:"for"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// The alert rules and docs/metrics.md name only metrics that a running
// daemon exports, with label values it exports; and every metric it
// exports is documented.
func TestPrometheus(t *testing.T) {
	var rules ruleFile
	if err := yaml.Unmarshal([]byte(repoFile(t, "prometheus/alerts.yml")), &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	docs, always := documented(t)
	s := metricsOf(t, startDaemon(t), always)

	t.Run("alerts", func(t *testing.T) {
		wanted := []string{"SidecarRegistrationLost", "SidecarEtcdUnreachable", "SidecarConfigMappingFailing", "SidecarHoldLost"}
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				wanted = slices.DeleteFunc(wanted, func(a string) bool { return a == r.Alert })
				if r.Labels["severity"] == "" {
					t.Errorf("%s: no severity label", r.Alert)
				}
				checkExpr(t, r.Alert, r.Expr, s)
			}
		}
		if len(wanted) > 0 {
			t.Errorf("alerts.yml has no rule %v", wanted)
		}
	})
	t.Run("documented", func(t *testing.T) {
		for name := range s.types {
			if !slices.Contains(docs, name) {
				t.Errorf("/metrics exports %s (%s); docs/metrics.md does not list it", name, s.types[name])
			}
		}
	})
	t.Run("scrape config", func(t *testing.T) {
		var cfg struct {
			RuleFiles     []string `yaml:"rule_files"`
			ScrapeConfigs []struct {
				JobName     string `yaml:"job_name"`
				MetricsPath string `yaml:"metrics_path"`
			} `yaml:"scrape_configs"`
		}
		if err := yaml.Unmarshal([]byte(repoFile(t, "prometheus/prometheus.yml")), &cfg); err != nil {
			t.Fatalf("prometheus.yml: %v", err)
		}
		if !slices.Contains(cfg.RuleFiles, "alerts.yml") || len(cfg.ScrapeConfigs) == 0 || cfg.ScrapeConfigs[0].MetricsPath != "/metrics" {
			t.Errorf("prometheus.yml: rule_files %q, scrape configs %+v: want alerts.yml and a job scraping /metrics", cfg.RuleFiles, cfg.ScrapeConfigs)
		}
	})
}

// checkExpr fails unless each selector of expr names an exported family
// (or Prometheus' own up) and each equality or regex matcher matches the
// labels of at least one of its samples.
func checkExpr(t *testing.T, alert, expr string, s scrape) {
	t.Helper()
	sels := selectors(expr)
	if len(sels) == 0 {
		t.Errorf("%s: no metric in %q", alert, expr)
	}
	for name, uses := range sels {
		if name == "up" {
			continue
		}
		if _, ok := s.family(name); !ok {
			t.Errorf("%s: %s is not exported by the daemon", alert, name)
			continue
		}
		for _, ms := range uses {
			if !anySample(s, name, ms) {
				t.Errorf("%s: no sample of %s matches %q", alert, name, ms)
			}
		}
	}
}

func anySample(s scrape, name string, ms []string) bool {
	for _, sm := range s.samples {
		if sm.name != name {
			continue
		}
		ok := true
		for i := 0; i+2 < len(ms); i += 3 {
			v, has := sm.labels[ms[i]]
			switch ms[i+1] {
			case "=":
				ok = ok && has && v == ms[i+2]
			case "=~":
				ok = ok && has && regexp.MustCompile("^(?:"+ms[i+2]+")$").MatchString(v)
			}
		}
		if ok {
			return true
		}
	}
	return false
}
