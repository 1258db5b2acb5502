package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// stage is a FROM and the instructions after it.
type stage struct {
	from, name string
	body       []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions: # comments
// and blank lines skipped, lines ending in \ joined with the next.
func parseDockerfile(t *testing.T, text string) (args []instruction, stages []stage) {
	t.Helper()
	var cur strings.Builder
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || trimmed[0] == '#') {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		cmd, rest, _ := strings.Cut(l, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(rest)}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			args = append(args, in)
		case len(stages) == 0:
			t.Fatalf("Dockerfile: %s before the first FROM", in.cmd)
		default:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	return args, stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

var goBuildRE = regexp.MustCompile(`CGO_ENABLED=0 .*go build (.*) -o (\S+) (\S+)$`)

// The Dockerfile builds ./cmd/sidecar statically in one stage and copies
// only the binary into a final stage that runs as a numeric non-root user.
func TestDockerfile(t *testing.T) {
	_, stages := parseDockerfile(t, repoFile(t, "docker/Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	var m []string
	for _, run := range build.all("RUN") {
		if m = goBuildRE.FindStringSubmatch(run); m != nil {
			break
		}
	}
	if m == nil || m[3] != "./cmd/sidecar" {
		t.Fatalf("build stage %q: no RUN CGO_ENABLED=0 ... go build ... -o OUT ./cmd/sidecar (got %q)", build.name, m)
	}
	copies := final.all("COPY")
	if !slices.ContainsFunc(copies, func(c string) bool { return strings.Contains(c, "--from="+build.name+" "+m[2]+" ") }) {
		t.Errorf("final stage copies %q; want the built %s from stage %s", copies, m[2], build.name)
	}
	users := final.all("USER")
	if len(users) != 1 || !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(users[0]) {
		t.Errorf("final stage USER %q: want one numeric, non-root user (Kubernetes' runAsNonRoot checks a number)", users)
	}
	if !strings.Contains(final.from, "distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want a static base (distroless static, scratch)", final.from)
	}
	for _, want := range []string{"VOLUME", "EXPOSE", "ENTRYPOINT"} {
		if len(final.all(want)) == 0 {
			t.Errorf("final stage has no %s", want)
		}
	}
	if hc := final.all("HEALTHCHECK"); len(hc) > 0 && !strings.HasPrefix(hc[0], "NONE") {
		t.Errorf("HEALTHCHECK %q: the image has no shell or curl to run it", hc[0])
	}
	t.Run("static binary", func(t *testing.T) { checkStaticBuild(t, m[1]) })
}

// checkStaticBuild runs the Dockerfile's go build here, with its flags
// (the version left empty), and checks the binary has no interpreter and
// no dynamic section: it runs in an image without libc.
func checkStaticBuild(t *testing.T, flags string) {
	flags = strings.ReplaceAll(flags, "${VERSION}", "test")
	args := append([]string{"build"}, splitQuoted(flags)...)
	out := filepath.Join(t.TempDir(), "sidecar")
	args = append(args, "-o", out, "./cmd/sidecar")
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %s program header: not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs %q: not static", libs)
	}
}

// splitQuoted splits shell words, keeping "double-quoted" words whole.
func splitQuoted(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"([^"]*)"|(\S+)`).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}
