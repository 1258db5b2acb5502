package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// resolveEndpoints returns the configured endpoints, parsed, or those
// named by the DNS SRV records of cfg.DNSSRV. cfg must be valid.
func resolveEndpoints(ctx context.Context, cfg Config) ([]endpoint, error) {
	raws := cfg.Endpoints
	if cfg.DNSSRV != "" {
		lctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		defer cancel()
		var err error
		raws, err = lookupSRV(lctx, cfg.Resolver, cfg.DNSSRV)
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctx.Err()
			}
			return nil, &ConnError{Endpoint: "_etcd-client(-ssl)._tcp." + cfg.DNSSRV, Kind: KindDNS, Err: err}
		}
		cfg.Logger.Debug("endpoints from dns srv", "domain", cfg.DNSSRV, "endpoints", strings.Join(raws, ","))
	}
	eps := make([]endpoint, 0, len(raws))
	for _, raw := range raws {
		e, _ := parseEndpoint(raw)
		eps = append(eps, e)
	}
	return eps, nil
}

// lookupSRV returns the client URLs of the etcd cluster of domain:
// https://target:port for each _etcd-client-ssl._tcp.<domain> record if
// there is any, else http://target:port for each _etcd-client._tcp.<domain>
// record, in the resolver's priority and weight order. etcdctl
// --discovery-srv reads the same records (srv.GetClient, which cannot be
// given a context or resolver) and merges both lists; one client cannot mix
// plain and TLS endpoints, so TLS wins here.
func lookupSRV(ctx context.Context, r *net.Resolver, domain string) ([]string, error) {
	var errs []error
	for _, s := range []struct{ service, scheme string }{
		{"etcd-client-ssl", "https"},
		{"etcd-client", "http"},
	} {
		_, addrs, err := r.LookupSRV(ctx, s.service, "tcp", domain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var urls []string
		for _, a := range addrs {
			host := strings.TrimSuffix(a.Target, ".")
			urls = append(urls, s.scheme+"://"+net.JoinHostPort(host, strconv.Itoa(int(a.Port))))
		}
		if len(urls) > 0 {
			return urls, nil
		}
	}
	if len(errs) < 2 {
		return nil, errors.Join(append(errs, errors.New("no SRV records"))...)
	}
	return nil, fmt.Errorf("%w; %w", errs[0], errs[1])
}
