package record_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/sidecar-dev/sidecar/internal/etcdtest"
	"github.com/sidecar-dev/sidecar/internal/record"
)

// TestMain fails the package when goroutines outlive its tests.
func TestMain(m *testing.M) { etcdtest.RunWithLeakCheck(m, 10*time.Second) }

// TestEncodeAsEndpointsManager: Encode writes byte for byte what etcd's
// naming endpoints manager writes for the same endpoint, and the manager
// reads it back.
func TestEncodeAsEndpointsManager(t *testing.T) {
	e := etcdtest.StartEmbedded(t)
	cli := e.Client(t)
	in := record.Instance{ID: "orders-1", Addr: "10.0.0.5:8080", Weight: 7, Node: "web-1",
		Metadata: map[string]string{"zone": "a", "version": "v1.4.2"}}
	mgr, err := endpoints.NewManager(cli, "/svc/orders")
	if err != nil {
		t.Fatal(err)
	}
	md := struct {
		ID       string            `json:"id"`
		Weight   int               `json:"weight"`
		Node     string            `json:"node"`
		Metadata map[string]string `json:"metadata"`
	}{in.ID, in.Weight, in.Node, in.Metadata}
	if err := mgr.AddEndpoint(t.Context(), "/svc/orders/orders-1", endpoints.Endpoint{Addr: in.Addr, Metadata: md}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(t.Context(), "/svc/orders/orders-1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get: %v %v", resp, err)
	}
	if got, want := string(record.Encode(in)), string(resp.Kvs[0].Value); got != want {
		t.Errorf("Encode:\n got %s\nwant %s (endpoints manager)", got, want)
	}
	if _, err := cli.Put(t.Context(), "/svc/orders/orders-2", string(record.Encode(in))); err != nil {
		t.Fatal(err)
	}
	eps, err := mgr.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ep, ok := eps["/svc/orders/orders-2"]; !ok || ep.Addr != in.Addr {
		t.Errorf("endpoints manager lists %+v", eps)
	}
}

func TestRoundTrip(t *testing.T) {
	in := record.Instance{ID: "orders-1", Addr: "[::1]:8080", Weight: 0, Node: "web-1", Metadata: map[string]string{"k": "v"}}
	out, err := record.Decode("/sidecar/services/orders/orders-1", record.Encode(in))
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Addr != in.Addr || out.Weight != 0 || out.Node != in.Node || !maps.Equal(out.Metadata, in.Metadata) {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if got := string(record.Encode(record.Instance{ID: "a", Addr: "h:1", Weight: 1, Node: "n", Metadata: map[string]string{}})); got !=
		`{"Op":0,"Addr":"h:1","Metadata":{"id":"a","weight":1,"node":"n","metadata":{}}}` {
		t.Errorf("Encode = %s", got)
	}
}

func TestDecode(t *testing.T) {
	const key = "/sidecar/services/orders/o1"
	tests := []struct {
		name    string
		value   string
		want    record.Instance
		wantErr string
	}{
		{"sidecar record", `{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"id":"other","weight":5,"node":"web-1","metadata":{"zone":"a"}}}`,
			record.Instance{ID: "o1", Addr: "10.0.0.5:8080", Weight: 5, Node: "web-1", Metadata: map[string]string{"zone": "a"}}, ""},
		{"no weight counts as 100", `{"Op":0,"Addr":"10.0.0.5:8080","Metadata":{"node":"web-1"}}`,
			record.Instance{ID: "o1", Addr: "10.0.0.5:8080", Weight: 100, Node: "web-1"}, ""},
		{"no metadata", `{"Addr":"10.0.0.5:8080"}`, record.Instance{ID: "o1", Addr: "10.0.0.5:8080", Weight: 100}, ""},
		{"null metadata", `{"Addr":"10.0.0.5:8080","Metadata":null}`, record.Instance{ID: "o1", Addr: "10.0.0.5:8080", Weight: 100}, ""},
		{"another tool's metadata", `{"Addr":"10.0.0.5:8080","Metadata":"v2"}`, record.Instance{ID: "o1", Addr: "10.0.0.5:8080", Weight: 100}, ""},
		{"non-string metadata values", `{"Addr":"h:1","Metadata":{"metadata":{"n":3,"b":true,"s":"x"}}}`,
			record.Instance{ID: "o1", Addr: "h:1", Weight: 100, Metadata: map[string]string{"n": "3", "b": "true", "s": "x"}}, ""},
		{"weight 0", `{"Addr":"h:1","Metadata":{"weight":0}}`, record.Instance{ID: "o1", Addr: "h:1", Weight: 0}, ""},
		{"negative weight", `{"Addr":"h:1","Metadata":{"weight":-1}}`, record.Instance{}, "weight -1 out of range"},
		{"huge weight", `{"Addr":"h:1","Metadata":{"weight":4294967296}}`, record.Instance{}, "out of range"},
		{"fractional weight", `{"Addr":"h:1","Metadata":{"weight":1.5}}`, record.Instance{}, "metadata"},
		{"no addr", `{"Op":0,"Metadata":{"weight":1}}`, record.Instance{}, "no Addr"},
		{"not json", `10.0.0.5:8080`, record.Instance{}, "record: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := record.Decode(key, []byte(tt.value))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.Addr != tt.want.Addr || got.Weight != tt.want.Weight || got.Node != tt.want.Node ||
				!maps.Equal(got.Metadata, tt.want.Metadata) {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
	if in, err := record.Decode("bare-id", []byte(`{"Addr":"h:1"}`)); err != nil || in.ID != "bare-id" {
		t.Errorf("a key without '/': %+v %v", in, err)
	}
}
