package main

import (
	"strings"
	"testing"
)

func TestParseNet(t *testing.T) {
	c, err := parseNet("fd=3,mac=00:16:3e:aa:bb:cc,rate=1000000,burst=65536,pps=2000")
	if err != nil {
		t.Fatal(err)
	}
	if c.FD != 3 || c.Tap != "" || c.MAC.String() != "00:16:3e:aa:bb:cc" ||
		c.Limit.Bytes != 1000000 || c.Limit.Burst != 65536 || c.Limit.Ops != 2000 {
		t.Errorf("parsed %+v", c)
	}
	c, err = parseNet("tap=xn0")
	if err != nil || c.Tap != "xn0" || c.FD != -1 || c.MAC != nil || c.Limit.Enabled() {
		t.Errorf("tap=xn0: %+v, %v", c, err)
	}
	for _, bad := range []string{
		"", "mac=00:16:3e:aa:bb:cc", "fd=3,tap=xn0", "fd=2", "fd=-1", "fd=x",
		"fd=3,fd=4", "fd=3,mac=01:16:3e:aa:bb:cc", "fd=3,mac=00:16:3e:aa:bb",
		"tap=a/b", "tap=0123456789abcdef", "fd=3,rate=-5", "fd=3,burst=10",
		"fd=3,speed=10", "fd=3,", "fd=3,rate",
	} {
		if _, err := parseNet(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	_, err = parseNet("fd=3,colour=red")
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown key: %v", err)
	}
}
