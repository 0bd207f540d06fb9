package toolstack

import (
	"strings"
	"testing"
)

func TestVifspecGood(t *testing.T) {
	for _, c := range []struct {
		spec string
		want Vif
	}{
		{"", Vif{}},
		{"mac=00:16:3E:74:3d:76,bridge=xenbr1", Vif{MAC: "00:16:3e:74:3d:76", Bridge: "xenbr1"}},
		{" bridge = br0 , ip=10.0.0.2 ,", Vif{Bridge: "br0", IP: "10.0.0.2/24"}},
		{"ip=10.1.2.3/16,gateway=10.1.0.1", Vif{IP: "10.1.2.3/16", Gateway: "10.1.0.1"}},
		{"ip=192.168.7.9/32", Vif{IP: "192.168.7.9/32"}},
		{"vifname=web0,model=virtio-net,type=vif", Vif{Vifname: "web0"}},
	} {
		got, err := ParseVifspec(c.spec)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q: got %+v, want %+v", c.spec, got, c.want)
		}
	}
}

func TestVifspecBad(t *testing.T) {
	for spec, want := range map[string]string{
		"mac=00:16:3e:74:3d":           "six pairs",
		"mac=01:16:3e:74:3d:76":        "multicast",
		"mac=00:00:00:00:00:00":        "all zeros",
		"mac=00:16:3e:74:3d:7g":        "six pairs",
		"bridge=":                      "interface name",
		"bridge=a-very-long-bridge-0":  "interface name",
		"bridge=br/0":                  "interface name",
		"bridge=..":                    "interface name",
		"ip=10.0.0.256":                "IPv4 address",
		"ip=fe80::1":                   "IPv4 address",
		"ip=10.0.0.2/33":               "prefix",
		"ip=10.0.0.2/-1":               "prefix",
		"ip=10.0.0.0/24":               "network's or broadcast",
		"ip=10.0.0.255":                "network's or broadcast",
		"ip=10.0.0.2 10.0.0.3":         "one address",
		"ip=0.0.0.0":                   "not an address",
		"gateway=10.0.0.1":             "without ip=",
		"ip=10.0.0.2,gateway=10.0.1.1": "not in 10.0.0.2/24's network",
		"ip=10.0.0.2,gateway=10.0.0.2": "own address",
		"gateway=10.0.0.x,ip=10.0.0.2": "IPv4 address",
		"rate=10Mb":                    "unit",
		"rate=fast":                    "RATE/s",
		"rate=0Mb/s":                   "not a number",
		"rate=1b/s":                    "less than one byte",
		"rate=10kb/s":                  "unit",
		"rate=1MB/s@20":                "no unit",
		"rate=1MB/s@0ms":               "interval",
		"rate=1MB/s@5min":              "interval unit",
		"rate=1B/s@1ms":                "0 bytes",
		"rate=99999999999B/s":          "not a number",
		"model=e1000":                  "virtio-net",
		"type=ioemu":                   "no emulated NICs",
		"script=vif-route":             "hotplug",
		"backend=1":                    "driver domains",
		"mtu=9000":                     "MTU",
		"devid=3":                      "place in the list",
		"gatewaydev=eth0":              "vif-route",
		"trusted":                      "not supported",
		"colour=blue":                  `unknown key "colour"`,
		"xenbr0":                       "not KEY=VALUE",
		"mac=00:16:3e:00:00:01,mac=00:16:3e:00:00:02": "given twice",
	} {
		_, err := ParseVifspec(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", spec, err, want)
		}
	}
}

func TestRate(t *testing.T) {
	for _, c := range []struct {
		spec               string
		bps, interval, brs uint64
	}{
		{"10Mb/s", 1250000, 50000, 62500},
		{"250KB/s", 250000, 50000, 12500},
		{"1MB/s@20ms", 1000000, 20000, 20000}, // the manual's own example
		{"8b/s@1s", 1, 1000000, 1},
		{"1GB/s@100us", 1000000000, 100, 100000},
	} {
		r, err := ParseRate(c.spec)
		if err != nil {
			t.Errorf("%s: %v", c.spec, err)
			continue
		}
		if r.BytesPerSec != c.bps || r.IntervalUS != c.interval || r.Burst != c.brs || r.Spec != c.spec {
			t.Errorf("%s: got %+v, want %d B/s, %d us, burst %d", c.spec, r, c.bps, c.interval, c.brs)
		}
	}
}

func TestDeriveMAC(t *testing.T) {
	u := "6f1c3a4e-2b7d-4c1e-9a55-0123456789ab"
	a := DeriveMAC(u, 0)
	if a != DeriveMAC(strings.ToUpper(u), 0) {
		t.Error("the MAC depends on the UUID's case")
	}
	if a != "00:16:3e:55:40:94" {
		// A change here changes every domain's address across an upgrade.
		t.Errorf("DeriveMAC changed: %s", a)
	}
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		for _, uu := range []string{u, "6f1c3a4e-2b7d-4c1e-9a55-0123456789ac"} {
			m := DeriveMAC(uu, i)
			if seen[m] {
				t.Errorf("%s vif %d: %s again", uu, i, m)
			}
			seen[m] = true
			if !strings.HasPrefix(m, "00:16:3e:") || m[9] > '7' {
				t.Errorf("%s: not in Xen's OUI with the fourth byte's top bit clear", m)
			}
			if _, err := parseMAC(m); err != nil {
				t.Errorf("%s: %v", m, err)
			}
		}
	}
}

func TestVifResolve(t *testing.T) {
	src := "name = \"g\"\nkernel = \"/k\"\nuuid = \"6f1c3a4e-2b7d-4c1e-9a55-0123456789ab\"\ncmdline = \"console=ttyS0\"\n" +
		"vif = [ 'ip=10.0.0.2,rate=10Mb/s',\n  'mac=00:16:3e:00:00:01,bridge=br1,ip=10.9.0.5/16,gateway=10.9.0.1' ]\n"
	cfg, w := mustResolve(t, src)
	if len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	if len(cfg.Vifs) != 2 {
		t.Fatalf("vifs: %+v", cfg.Vifs)
	}
	v0, v1 := cfg.Vifs[0], cfg.Vifs[1]
	if v0.Bridge != DefaultBridge || v0.MAC != DeriveMAC(cfg.UUID, 0) || !v0.MACAuto || v1.MACAuto {
		t.Errorf("defaults: %+v", v0)
	}
	if got := v0.HVArg(3); got != "fd=3,mac="+v0.MAC+",rate=1250000,burst=62500" {
		t.Errorf("hv arg %q", got)
	}
	if got := v1.HVArg(4); got != "fd=4,mac=00:16:3e:00:00:01" {
		t.Errorf("hv arg %q", got)
	}
	if got, want := cfg.KernelCmdline(), "console=ttyS0 ip=10.0.0.2:::255.255.255.0::eth0:off ip=10.9.0.5::10.9.0.1:255.255.0.0::eth1:off"; got != want {
		t.Errorf("cmdline\n got %q\nwant %q", got, want)
	}
	if v0.TapName(7, 0) != "vif7.0" || (Vif{Vifname: "web0"}).TapName(7, 1) != "web0" {
		t.Error("tap names")
	}
	r := &Record{ID: 7, Name: "g", UUID: cfg.UUID, Config: cfg, Control: "/c", Console: "/s"}
	ts := &Toolstack{State: &State{Dir: "/st"}}
	args := strings.Join(ts.hvArgs(r, false, ""), " ")
	if !strings.Contains(args, "--net fd=3,mac="+v0.MAC+",rate=1250000,burst=62500 --net fd=4,mac=00:16:3e:00:00:01") {
		t.Errorf("hv args: %s", args)
	}
	if !strings.Contains(args, "--cmdline console=ttyS0 ip=10.0.0.2:") {
		t.Errorf("hv args carry no ip=: %s", args)
	}
}

func TestVifIPParamTwice(t *testing.T) {
	_, w := mustResolve(t, "name = \"g\"\nkernel = \"/k\"\nextra = \"ip=dhcp\"\nvif = [ '', 'ip=10.0.0.2' ]\n")
	if len(w) != 1 || !strings.Contains(w[0].String(), "d.cfg:4: warning: vif 1 has ip= and the command line has its own") {
		t.Errorf("warnings %v", w)
	}
}

// Every bad vif is reported at the line of the spec, not of "vif =".
func TestVifResolveErrors(t *testing.T) {
	head := "name = \"g\"\nkernel = \"/k\"\n"
	for src, want := range map[string]string{
		head + "vif = 'bridge=br0'\n":                                           "d.cfg:3:7: vif must be a list",
		head + "vif = [ 'bridge=br0',\n 'mac=00:16:3e:00:00:0' ]\n":             "d.cfg:4:2: vif 1 \"mac=00:16:3e:00:00:0\": mac",
		head + "vif = [\n\n 'rate=1Tb/s' ]\n":                                   "d.cfg:5:2: vif 0 \"rate=1Tb/s\": rate",
		head + "vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3e:00:00:01' ]\n":   "d.cfg:3:34: vif 1",
		head + "vif = [ 'vifname=a', 'vifname=a' ]\n":                           "vifname a is vif 0's too",
		head + "vif = [ ['bridge=br0'] ]\n":                                     "d.cfg:3:9: vif entry 1 is a list",
		head + "vif = [ 'script=vif-nat' ]\n":                                   "d.cfg:3:9: vif 0 \"script=vif-nat\": script= is not supported",
		head + "disk = [ 'a', 'b', 'c', 'd', 'e' ]\nvif = [ '', '', '', '' ]\n": "d.cfg:4:7: 5 disks and 4 vifs",
	} {
		_, _, err := resolve(t, src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %q", src, err, want)
		}
	}
}

func FuzzVifspec(f *testing.F) {
	for _, s := range []string{"", "mac=00:16:3e:74:3d:76,bridge=xenbr0,ip=10.0.0.2/24,gateway=10.0.0.1,rate=10Mb/s@20ms",
		"vifname=v,model=virtio", "rate=1B/s@1s", "ip=1.2.3.4/31", "trusted,", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		v, err := ParseVifspec(spec)
		if err != nil {
			return
		}
		if v.MAC != "" {
			if _, err := parseMAC(v.MAC); err != nil {
				t.Fatalf("%q: accepted mac %q: %v", spec, v.MAC, err)
			}
		}
		for _, n := range []string{v.Bridge, v.Vifname} {
			if n != "" && checkIfname("name", n) != nil {
				t.Fatalf("%q: accepted interface name %q", spec, n)
			}
		}
		if v.IP != "" {
			// The parameter must be one kernel command-line word.
			p := v.IPParam(0)
			if strings.ContainsAny(p, " \t\"") || strings.Count(p, ":") != 6 {
				t.Fatalf("%q: ip param %q", spec, p)
			}
		}
		if v.Rate != nil && (v.Rate.BytesPerSec == 0 || v.Rate.Burst == 0 || v.Rate.IntervalUS == 0) {
			t.Fatalf("%q: rate %+v", spec, *v.Rate)
		}
		if a := v.HVArg(3); strings.ContainsAny(a, " \t'\"") {
			t.Fatalf("%q: hv arg %q", spec, a)
		}
	})
}
