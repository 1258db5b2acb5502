package chaos

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar/internal/names"
)

// fuzzCase is one abusive request on the socket: raw bytes and the status
// codes that are right for it (0 stands for "the server closed the
// connection without an answer", right only for bytes that are not HTTP).
type fuzzCase struct {
	class string
	raw   []byte
	want  []int
}

// fuzzBodyLimit is the daemon's request body cap (SPEC §5: 413 over 1 MiB).
const fuzzBodyLimit = 1 << 20

// fuzzRoutes is the local API's route table as SPEC §5 states it: each
// concrete path (names filled in) and the methods it allows.
var fuzzRoutes = []struct {
	path    string
	methods []string
}{
	{"/v1/health", []string{"GET", "HEAD"}},
	{"/v1/status", []string{"GET", "HEAD"}},
	{"/v1/cluster", []string{"GET", "HEAD"}},
	{"/metrics", []string{"GET", "HEAD"}},
	{"/v1/services", []string{"GET", "HEAD"}},
	{"/v1/services/chaos", []string{"GET", "HEAD"}},
	{"/v1/services/chaos/pick", []string{"GET", "HEAD"}},
	{"/v1/registration/weight", []string{"PUT"}},
	{"/v1/config", []string{"GET", "HEAD"}},
	{"/v1/locks/fuzz", []string{"POST"}},
	{"/v1/elections/fuzz", []string{"GET", "HEAD", "POST"}},
}

// fuzzClasses are the generators of abusive requests, with their relative
// frequencies (oversized bodies are rare: each is over 1 MiB).
var fuzzClasses = []struct {
	weight int
	gen    func(r *rand.Rand) fuzzCase
}{
	{12, fuzzMethod},
	{12, fuzzPath},
	{16, fuzzName},
	{14, fuzzQuery},
	{16, fuzzJSON},
	{8, fuzzContentType},
	{2, fuzzOversized},
	{3, fuzzHeader},
	{17, fuzzGarbage},
}

// fuzzGen returns the next abusive request.
func fuzzGen(r *rand.Rand) fuzzCase {
	total := 0
	for _, c := range fuzzClasses {
		total += c.weight
	}
	n := r.IntN(total)
	for _, c := range fuzzClasses {
		if n < c.weight {
			return c.gen(r)
		}
		n -= c.weight
	}
	panic("unreachable")
}

// fuzzRequest is a well-formed HTTP/1.1 request with a body (if not nil)
// under its exact Content-Length.
func fuzzRequest(method, target, contentType string, body []byte, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n", method, target)
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

func fuzzPick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// fuzzMethod: a method a route does not allow → 405.
func fuzzMethod(r *rand.Rand) fuzzCase {
	rt := fuzzPick(r, fuzzRoutes...)
	var m string
	for m == "" || slices.Contains(rt.methods, m) {
		m = fuzzPick(r, "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FUZZ", "get")
	}
	return fuzzCase{class: "method", raw: fuzzRequest(m, rt.path, "", nil), want: []int{405}}
}

// fuzzPath: a path no route has → 404.
func fuzzPath(r *rand.Rand) fuzzCase {
	known := []string{"health", "status", "cluster", "services", "registration", "config", "locks", "elections"}
	seg := func() string {
		for {
			s := fuzzWord(r, 1+r.IntN(12), "abcdefghijklmnopqrstuvwxyz0123456789-_~")
			if !slices.Contains(known, s) && s != "v1" && s != "metrics" {
				return s
			}
		}
	}
	var p string
	switch r.IntN(4) {
	case 0:
		p = "/" + seg()
	case 1:
		p = "/v1/" + seg() + "/" + seg()
	case 2:
		p = "/v1/" + seg()
	default: // one element too many on a known route
		p = fuzzPick(r, "/v1/services/chaos/pick/", "/v1/locks/fuzz/", "/v1/health/", "/v1/registration/weight/") + seg()
	}
	return fuzzCase{class: "path", raw: fuzzRequest(fuzzPick(r, "GET", "POST", "PUT"), p, "", nil), want: []int{404}}
}

// fuzzBadName is a lock, election or service name that SPEC §4 refuses,
// escaped for a path element (never ".", ".." or "/", which never reach a
// route).
func fuzzBadName(r *rand.Rand) string {
	for {
		var s string
		switch r.IntN(4) {
		case 0: // a first character that may not start a name
			s = fuzzPick(r, ".", "-", "_") + fuzzWord(r, r.IntN(10), "abc")
		case 1: // too long
			s = strings.Repeat("a", 129+r.IntN(200))
		default: // characters outside the alphabet
			s = fuzzWord(r, 1+r.IntN(40), "aZ9._- /\\:@!~*()%+,;=?#&\x00\x7f\xff\"'<>é")
		}
		// The mux redirects "." and ".."; a lone "/" (%2F) it answers 404.
		if !names.Valid(s) && s != "." && s != ".." && s != "/" {
			return url.PathEscape(s)
		}
	}
}

// fuzzName: a name that is not valid on a route that takes one → 400.
func fuzzName(r *rand.Rand) fuzzCase {
	n := fuzzBadName(r)
	var raw []byte
	switch r.IntN(5) {
	case 0:
		raw = fuzzRequest("GET", "/v1/services/"+n, "", nil)
	case 1:
		raw = fuzzRequest("GET", "/v1/services/"+n+"/pick", "", nil)
	case 2:
		raw = fuzzRequest("GET", "/v1/elections/"+n, "", nil)
	case 3:
		raw = fuzzRequest("POST", "/v1/locks/"+n+"?wait=0", "", nil)
	default:
		raw = fuzzRequest("POST", "/v1/elections/"+n+"?wait=0", "application/json", []byte(`{"value":"v"}`))
	}
	return fuzzCase{class: "name", raw: raw, want: []int{400}}
}

// fuzzQuery: a ?watch= that is not a boolean, a ?wait= that is not a
// duration of 0 or more, or a query that is not URL encoding → 400.
func fuzzQuery(r *rand.Rand) fuzzCase {
	badBool := func() string {
		for {
			v := fuzzPick(r, "maybe", "yes", "no", "2", "-1", "on", "TRUE1", fuzzWord(r, 1+r.IntN(8), "abcxyz019%+"))
			if _, err := strconv.ParseBool(v); err != nil && v != "" && fuzzQueryValue(v) {
				return v
			}
		}
	}
	badWait := func() string {
		for {
			v := fuzzPick(r, "-1", "-1s", "abc", "1x", "10", "1h-", "-0.5ms", fuzzWord(r, 1+r.IntN(8), "0123456789smhu.-x"))
			if d, err := time.ParseDuration(v); (err != nil || d < 0) && fuzzQueryValue(v) {
				return v
			}
		}
	}
	var raw []byte
	switch r.IntN(6) {
	case 0:
		raw = fuzzRequest("GET", "/v1/services/chaos?watch="+badBool(), "", nil)
	case 1:
		raw = fuzzRequest("GET", "/v1/config?watch="+badBool(), "", nil)
	case 2:
		raw = fuzzRequest("GET", "/v1/elections/fuzz?watch="+badBool(), "", nil)
	case 3:
		raw = fuzzRequest("POST", "/v1/locks/fuzzq?wait="+badWait(), "", nil)
	case 4:
		raw = fuzzRequest("POST", "/v1/elections/fuzzq?wait="+badWait(), "application/json", []byte(`{"value":"v"}`))
	default: // not URL encoding at all: never read as "no wait"
		raw = fuzzRequest("POST", "/v1/locks/fuzzq?"+fuzzPick(r, "wait=%zz", "wait=1s&%", "wait=%", "wait=0%g"), "", nil)
	}
	return fuzzCase{class: "query", raw: raw, want: []int{400}}
}

// fuzzQueryValue reports whether v can stand in a query as it is (a value
// with a bad %-escape is the default case's business).
func fuzzQueryValue(v string) bool {
	_, err := url.QueryUnescape(v)
	return err == nil && !strings.ContainsAny(v, "&;#")
}

// fuzzJSON: a body that is not the JSON object the route takes (syntax,
// types, unknown fields, trailing data, out-of-range values) → 400.
func fuzzJSON(r *rand.Rand) fuzzCase {
	weightBad := []string{
		`{"weight":"5"}`, `{"weight":1.5}`, `{"weight":true}`, `{"weight":null}`, `{"weight":-1}`,
		`{"weight":10001}`, `{"weight":1e9}`, `{"weight":5,"x":1}`, `{"weight":5}{}`, `{"weight":5} x`,
		`[]`, `[{"weight":5}]`, `null`, `"weight"`, `5`, `{}`, `{"wieght":5}`, ``, `{"weight":99999999999999999999}`,
	}
	valueBad := []string{
		`{"value":5}`, `{"value":null}`, `{"value":"a","x":1}`, `{"value":"a"} []`, `{}`, `[]`, `null`, ``,
		`{"value":["a"]}`, `{"valu":"a"}`,
	}
	// cut returns a valid body cut short, or with one byte swapped for
	// one that breaks it (never a byte of the value at keep, where the
	// swap could leave valid JSON).
	cut := func(s string, keep int) string {
		if r.IntN(2) == 0 {
			return s[:r.IntN(len(s))]
		}
		b := []byte(s)
		i := r.IntN(len(b) - 1)
		if i >= keep {
			i++
		}
		b[i] = fuzzPick[byte](r, '{', '}', '"', ',', ':', 'x', 0, 0xff)
		return string(b)
	}
	if r.IntN(2) == 0 {
		var body string
		for body == "" || body == `{"weight":5}` {
			body = fuzzPick(r, append(weightBad, cut(`{"weight":5}`, 10))...)
		}
		return fuzzCase{class: "json", raw: fuzzRequest("PUT", "/v1/registration/weight", "application/json", []byte(body)), want: []int{400}}
	}
	var body string
	for body == "" || body == `{"value":"v"}` {
		body = fuzzPick(r, append(valueBad, cut(`{"value":"v"}`, 10))...)
	}
	return fuzzCase{class: "json", raw: fuzzRequest("POST", "/v1/elections/fuzzj?wait=0", "application/json", []byte(body)), want: []int{400}}
}

// fuzzContentType: a good JSON body under a content type that is not JSON
// → 415 (the weight sent is the one already registered, so a daemon that
// took it would still answer 200 and be caught).
func fuzzContentType(r *rand.Rand) fuzzCase {
	ct := fuzzPick(r, "text/plain", "application/xml", "multipart/form-data; boundary=x",
		"application/x-www-form-urlencoded", "text/json", "application/jsonx", "*/*")
	if r.IntN(2) == 0 {
		return fuzzCase{class: "content-type", raw: fuzzRequest("PUT", "/v1/registration/weight", ct, []byte(`{"weight":100}`)), want: []int{415}}
	}
	return fuzzCase{class: "content-type", raw: fuzzRequest("POST", "/v1/elections/fuzzc?wait=0", ct, []byte(`{"value":"v"}`)), want: []int{415}}
}

// fuzzOversized: a body over the cap, JSON that stays well-formed up to
// the cap so only the size is wrong → 413.
func fuzzOversized(r *rand.Rand) fuzzCase {
	pad := bytes.Repeat([]byte(" "), fuzzBodyLimit+1+r.IntN(4096))
	if r.IntN(2) == 0 {
		body := slices.Concat([]byte(`{"weight":`), pad, []byte(`100}`))
		return fuzzCase{class: "oversized", raw: fuzzRequest("PUT", "/v1/registration/weight", "application/json", body), want: []int{413}}
	}
	body := slices.Concat([]byte(`{"value":`), pad, []byte(`"v"}`))
	return fuzzCase{class: "oversized", raw: fuzzRequest("POST", "/v1/elections/fuzzo?wait=0", "application/json", body), want: []int{413}}
}

// fuzzHeader: headers over the daemon's 64 KiB (one huge header or very
// many small ones) → 431.
func fuzzHeader(r *rand.Rand) fuzzCase {
	if r.IntN(2) == 0 {
		big := "X-Fuzz: " + strings.Repeat("a", 80<<10+r.IntN(64<<10))
		return fuzzCase{class: "header", raw: fuzzRequest("GET", "/v1/health", "", nil, big), want: []int{431}}
	}
	var hs []string
	for i := range 3000 + r.IntN(1000) {
		hs = append(hs, fmt.Sprintf("X-Fuzz-%d: %s", i, strings.Repeat("b", 20)))
	}
	return fuzzCase{class: "header", raw: fuzzRequest("GET", fuzzPick(r, "/v1/health", "/v1/status"), "", nil, hs...), want: []int{431}}
}

// fuzzGarbage: bytes that are not HTTP, or HTTP broken in its framing
// (request line, header syntax, Content-Length) → 400, or the connection
// closed without an answer.
func fuzzGarbage(r *rand.Rand) fuzzCase {
	broken := []string{
		"GET\r\n\r\n",
		"GET /v1/health\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost x\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"PUT /v1/registration/weight HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}",
		"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\n Host: x\r\n\r\n",
		"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not a tls hello either\r\n\r\n",
	}
	if r.IntN(3) == 0 {
		return fuzzCase{class: "garbage", raw: []byte(fuzzPick(r, broken...)), want: []int{400}}
	}
	b := make([]byte, 1+r.IntN(512))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return fuzzCase{class: "garbage", raw: append(b, "\r\n\r\n"...), want: []int{400, 0}}
}

// fuzzWord is n random characters of alphabet (its runes).
func fuzzWord(r *rand.Rand, n int, alphabet string) string {
	rs := []rune(alphabet)
	var b strings.Builder
	for range n {
		b.WriteRune(rs[r.IntN(len(rs))])
	}
	return b.String()
}
