package etcdclient_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/sidecar-dev/sidecar/internal/etcdclient"
	"github.com/sidecar-dev/sidecar/internal/etcdtest"
)

// startDNS serves records (SRV name without the final dot -> records) over
// UDP on loopback until the test ends; other names are NXDOMAIN. It returns
// a resolver that asks only this server.
func startDNS(t *testing.T, records map[string][]net.SRV) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := answer(buf[:n], records); err == nil {
				_, _ = pc.WriteTo(resp, addr)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func answer(query []byte, records map[string][]net.SRV) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true},
		Questions: []dnsmessage.Question{q},
	}
	srvs, ok := records[strings.TrimSuffix(q.Name.String(), ".")]
	switch {
	case !ok:
		msg.Header.RCode = dnsmessage.RCodeNameError
	case q.Type == dnsmessage.TypeSRV:
		for _, s := range srvs {
			msg.Answers = append(msg.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeSRV, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: dnsmessage.MustNewName(s.Target)},
			})
		}
	}
	return msg.Pack()
}

func TestDNSSRV(t *testing.T) {
	s := etcdtest.StartServer(t, etcdtest.ServerOptions{})
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(s.ClientURL, "http://"))
	port, _ := strconv.Atoi(portStr)
	resolver := startDNS(t, map[string][]net.SRV{
		"_etcd-client._tcp.plain.test":     {{Target: "localhost.", Port: uint16(port), Weight: 1}},
		"_etcd-client._tcp.both.test":      {{Target: "localhost.", Port: uint16(port), Weight: 1}},
		"_etcd-client-ssl._tcp.both.test":  {{Target: "etcd-1.both.test.", Port: 2379, Weight: 1}},
		"_etcd-client-ssl._tcp.empty.test": {},
	})

	t.Run("http records", func(t *testing.T) {
		cfg := etcdclient.Config{DNSSRV: "plain.test", Resolver: resolver}
		cli := newChecked(t, cfg)
		if got, want := strings.Join(cli.Endpoints(), ","), "http://localhost:"+portStr; got != want {
			t.Errorf("endpoints = %s, want %s", got, want)
		}
		putGet(t, cli)
	})
	t.Run("https records win", func(t *testing.T) {
		cli, err := etcdclient.New(t.Context(), etcdclient.Config{DNSSRV: "both.test", Resolver: resolver})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if got, want := strings.Join(cli.Endpoints(), ","), "https://etcd-1.both.test:2379"; got != want {
			t.Errorf("endpoints = %s, want %s", got, want)
		}
	})
	for _, domain := range []string{"missing.test", "empty.test"} {
		t.Run("no records in "+domain, func(t *testing.T) {
			_, err := etcdclient.New(t.Context(), etcdclient.Config{DNSSRV: domain, Resolver: resolver})
			wantConnError(t, err, "_etcd-client(-ssl)._tcp."+domain, etcdclient.KindDNS, "DNS lookup failed", "_etcd-client._tcp."+domain)
		})
	}
	t.Run("unresolvable endpoint host", func(t *testing.T) {
		ep := "http://no-such-host.invalid:2379"
		err, _ := checkErr(t, etcdclient.Config{Endpoints: []string{ep}, Resolver: resolver})
		wantConnError(t, err, ep, etcdclient.KindDNS, "DNS lookup failed", "no-such-host.invalid")
	})
}
