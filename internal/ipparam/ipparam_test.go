package ipparam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []Config{
		{Addr: netip.MustParsePrefix("10.0.0.2/24"), Device: "eth0"},
		{Addr: netip.MustParsePrefix("10.9.0.5/16"), Gateway: netip.MustParseAddr("10.9.0.1"), Device: "eth3"},
		{Addr: netip.MustParsePrefix("192.168.1.7/32"), Device: "eth1"},
	} {
		s := c.String()
		got, err := Parse(strings.TrimPrefix(s, "ip="))
		if err != nil || got != c {
			t.Errorf("%s: parsed back as %+v, %v", s, got, err)
		}
	}
	want := "ip=10.9.0.5::10.9.0.1:255.255.0.0::eth3:off"
	c := Config{Addr: netip.MustParsePrefix("10.9.0.5/16"), Gateway: netip.MustParseAddr("10.9.0.1"), Device: "eth3"}
	if c.String() != want {
		t.Errorf("got %s, want %s", c, want)
	}
}

// What people write by hand, in nfsroot.rst's form.
func TestParseForms(t *testing.T) {
	for v, want := range map[string]string{
		"10.0.0.2":                         "", // one field: not static
		"10.0.0.2:10.0.0.1":                "10.0.0.2/24 eth0",
		"10.0.0.2::10.0.0.1:255.255.255.0": "10.0.0.2/24 eth0 via 10.0.0.1",
		"10.0.0.2:::255.255.255.128::eth1:none:8.8.8.8": "10.0.0.2/25 eth1",
		"10.0.0.2:::255.255.0.0:host:eth2:static":       "10.0.0.2/16 eth2",
	} {
		c, err := Parse(v)
		if want == "" {
			if !errors.Is(err, ErrNotStatic) {
				t.Errorf("%s: %v, want ErrNotStatic", v, err)
			}
			continue
		}
		got := c.Addr.String() + " " + c.Device
		if c.Gateway.IsValid() {
			got += " via " + c.Gateway.String()
		}
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", v, got, err, want)
		}
	}
}

func TestParseBad(t *testing.T) {
	for v, want := range map[string]error{
		"dhcp":                         ErrNotStatic,
		"off":                          ErrNotStatic,
		":::::eth0:dhcp":               ErrNotStatic,
		"10.0.0.2:::::eth0:bootp":      ErrNotStatic,
		"10.0.0.x::::::off":            nil,
		"10.0.0.2:::255.0.255.0::eth0": nil,
		"10.0.0.2:::0.0.0.0::eth0":     nil,
		"10.0.0.2::gw::::off":          nil,
		"10.0.0.2:::::eth/0:off":       nil,
	} {
		_, err := Parse(v)
		if err == nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v", v, err)
		}
		if want == nil && errors.Is(err, ErrNotStatic) {
			t.Errorf("%s: a malformed static address taken for another protocol: %v", v, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	good := map[string]string{"10.0.0.2": "10.0.0.2/24", "10.1.2.3/16": "10.1.2.3/16", "10.0.0.0/31": "10.0.0.0/31", "1.2.3.4/32": "1.2.3.4/32"}
	for s, want := range good {
		if p, err := ParseAddress(s); err != nil || p.String() != want {
			t.Errorf("%s: %v %v", s, p, err)
		}
	}
	for _, s := range []string{"10.0.0.0/24", "10.0.0.255", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "10.0.0.2/0", "10.0.0.2/+8", "10.0.0.2/", "x"} {
		if _, err := ParseAddress(s); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

func TestParseGateway(t *testing.T) {
	a := netip.MustParsePrefix("10.0.0.2/24")
	if g, err := ParseGateway("10.0.0.1", a); err != nil || g.String() != "10.0.0.1" {
		t.Errorf("%v %v", g, err)
	}
	for _, s := range []string{"10.0.1.1", "10.0.0.2", "fe80::1", "gw"} {
		if _, err := ParseGateway(s, a); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

// Parse reads what PID 1 finds on the kernel command line, which anyone
// who writes a config controls: it must not panic, and what it accepts
// must write back as a parameter that parses to the same thing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.2::10.0.0.1:255.255.255.0::eth0:off", "dhcp", "10.0.0.2", "1.2.3.4:::::", ":::::::::::", "10.0.0.2:::255.255.255.255::eth9:none:8.8.8.8:8.8.4.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := Parse(v)
		if err != nil {
			return
		}
		again, err := Parse(strings.TrimPrefix(c.String(), "ip="))
		if err != nil || again != c {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", v, c, c.String(), again, err)
		}
	})
}
