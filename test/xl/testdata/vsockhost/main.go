// Command vsockhost is the host end of the vsock lab test: a Unix
// socket the guest connects to, and a round-trip timer through the hv's
// CONNECT handshake. The lab has only busybox, whose nc has no Unix
// sockets.
//
//	vsockhost listen PATH SECONDS   print what one client sends, then exit
//	vsockhost bench UDS PORT N      N request/answer round trips to PORT
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vsockhost:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "listen":
		secs, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: args[1], Net: "unix"})
		if err != nil {
			return err
		}
		defer ln.Close()
		// The jailed hv connects as the domain's uid, which owns the
		// directory: give it the socket, as a host agent must.
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Dir(args[1]), &st); err != nil {
			return err
		}
		if err := os.Lchown(args[1], int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		ln.SetDeadline(time.Now().Add(time.Duration(secs) * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(os.Stdout, c)
		return err
	case len(args) == 4 && args[0] == "bench":
		n, err := strconv.Atoi(args[3])
		if err != nil || n < 1 {
			return fmt.Errorf("bad count %q", args[3])
		}
		return bench(args[1], args[2], n)
	}
	return fmt.Errorf("usage: vsockhost listen PATH SECONDS | bench UDS PORT N")
}

func bench(uds, port string, n int) error {
	start := time.Now()
	c, err := net.Dial("unix", uds)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(180 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "CONNECT %s\n", port)
	if _, err := br.ReadString('\n'); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	connect := time.Since(start)
	rtt := make([]time.Duration, n)
	for i := range rtt {
		t0 := time.Now()
		if _, err := io.WriteString(c, "health\n"); err != nil {
			return err
		}
		if _, err := br.ReadString('\n'); err != nil {
			return err
		}
		rtt[i] = time.Since(t0)
	}
	slices.Sort(rtt)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	fmt.Printf("connect %.0f us; %d round trips: min %.0f us, median %.0f us, p90 %.0f us, max %.0f us\n",
		us(connect), n, us(rtt[0]), us(rtt[n/2]), us(rtt[n*9/10]), us(rtt[n-1]))
	return nil
}
