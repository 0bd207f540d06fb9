package main

import (
	"strings"
	"testing"
)

func TestParseVsock(t *testing.T) {
	v, err := parseVsock("cid=42,uds=/run/xeno/v.sock")
	if err != nil || v.CID != 42 || v.UDS != "/run/xeno/v.sock" {
		t.Fatalf("parseVsock = %+v, %v", v, err)
	}
	for _, bad := range []string{"", "cid=2,uds=/x", "cid=4294967295,uds=/x", "cid=-1,uds=/x", "cid=3", "uds=/x",
		"cid=3,uds=", "cid=3,uds=/x,mode=1", "cid=3,uds=/" + strings.Repeat("a", 96)} {
		if _, err := parseVsock(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseVsock("cid=3,uds=/" + strings.Repeat("a", 95)); err != nil {
		t.Errorf("a 96-byte path refused: %v", err)
	}
}
