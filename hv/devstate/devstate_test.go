package devstate

import (
	"strings"
	"testing"
)

type st struct {
	Version int    `json:"version"`
	N       uint8  `json:"n"`
	B       []byte `json:"b"`
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode("x", &st{Version: 1, N: 7, B: []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var got st
	if err := Decode("x", b, 1, &got); err != nil {
		t.Fatal(err)
	}
	if got.N != 7 || string(got.B) != "\x01\x02" {
		t.Errorf("got %+v", got)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"version":2,"n":1}`, "version 2, this hv reads 1"},
		{`{"n":1}`, "no version"},
		{`{"version":1,"n":300}`, "cannot unmarshal"},
		{`{"version":1,"m":1}`, "unknown field"},
		{`{"version":1} {}`, "after top-level value"},
		{`{"version":1`, "unexpected end"},
		{``, "unexpected end"},
		{`[]`, "cannot unmarshal"},
		{`{"version":1,"b":"` + strings.Repeat("A", Max) + `"}`, "at most"},
	} {
		var s st
		err := Decode("uart", []byte(c.in), 1, &s)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "uart state: ") {
			t.Errorf("%.40q: got %v, want an error with %q", c.in, err, c.want)
		}
	}
}
