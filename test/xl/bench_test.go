package xl_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
)

const benchRuns = 20

type stats struct{ min, median, mean time.Duration }

func measure(n int, f func() error) (stats, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			return stats{}, err
		}
		ds = append(ds, time.Since(t0))
	}
	return summarize(ds), nil
}

func summarize(ds []time.Duration) stats {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	n := len(ds)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return stats{min: ds[0], median: ds[n/2], mean: sum / time.Duration(n)}
}

func (s stats) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	return fmt.Sprintf("median %10s  min %10s  mean %10s", ms(s.median), ms(s.min), ms(s.mean))
}

func benchEnv(b *testing.B) *env {
	testenv.RequireKVM(b)
	e := &env{t: b, xl: testenv.Bin(b, "xl"), dir: b.TempDir()}
	e.hv = filepath.Join(filepath.Dir(e.xl), "hv")
	e.state = filepath.Join(e.dir, "state")
	// Whatever happens, no domain outlives the benchmark.
	b.Cleanup(e.cleanup)
	return e
}

func (e *env) benchRun(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := e.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func benchGuest(b *testing.B, name string) string {
	return testenv.Guest(b, name)
}

// BenchmarkList50 times `xl list` (and -l) with 50 live domains, each a
// real hv running an idle micro-guest, so that every row costs what it
// costs in use: a record read and a control-socket status call. The peer
// is ps(1) reading /proc for the same 50 hv processes.
func BenchmarkList50(b *testing.B) {
	e := benchEnv(b)
	k := benchGuest(b, "shutdown")
	var pids []string
	for i := 0; i < 50; i++ {
		cfg := filepath.Join(e.dir, fmt.Sprintf("d%d.cfg", i))
		os.WriteFile(cfg, []byte(fmt.Sprintf("name = \"bench%02d\"\nkernel = %q\nmemory = 16\nextra = \"xtf.how=none\"\n", i, k)), 0o644)
		if err := e.benchRun("create", "-q", cfg); err != nil {
			b.Fatal(err)
		}
	}
	for _, d := range e.listQuiet() {
		pids = append(pids, strconv.Itoa(d.HVPid))
	}
	if len(pids) != 50 {
		b.Fatalf("%d domains up, want 50", len(pids))
	}
	ps, err := exec.LookPath("ps")
	if err != nil {
		b.Skip("needs ps for the peer figure")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list, err := measure(benchRuns, func() error { return e.benchRun("list") })
		if err != nil {
			b.Fatal(err)
		}
		long, err := measure(benchRuns, func() error { return e.benchRun("list", "-l") })
		if err != nil {
			b.Fatal(err)
		}
		peer, err := measure(benchRuns, func() error {
			return exec.Command(ps, "-o", "pid,stat,time,rss,args", "-p", strings.Join(pids, ",")).Run()
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(list.median)/1e6, "ms/xl-list")
		b.ReportMetric(float64(peer.median)/1e6, "ms/ps")
		fmt.Printf("\nxl list with 50 live domains (%d runs each)\n", benchRuns)
		fmt.Printf("  %-38s %s\n", "xl list", list)
		fmt.Printf("  %-38s %s\n", "xl list -l", long)
		fmt.Printf("  %-38s %s\n", "peer: ps -p <50 hv pids>", peer)
	}
}

// BenchmarkCreateOverhead compares, on the same micro-guest that powers
// off at once, the hv started directly against `xl create -F` (parse,
// check, record, monitor, hv, on_poweroff), both until the domain has
// ended; and `xl create` (detached) until it returns with the domain up.
func BenchmarkCreateOverhead(b *testing.B) {
	e := benchEnv(b)
	k := benchGuest(b, "shutdown")
	cfg := filepath.Join(e.dir, "bench.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("name = \"bench\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=poweroff\"\n", k)), 0o644)
	upCfg := filepath.Join(e.dir, "up.cfg")
	os.WriteFile(upCfg, []byte(fmt.Sprintf("name = \"up\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\n", k)), 0o644)
	hvDir := filepath.Join(e.dir, "hv")
	os.MkdirAll(hvDir, 0o700)
	direct := func() error {
		c := exec.Command(e.hv, "--kernel", k, "--cmdline", "xtf.how=poweroff", "--memory", "32", "--vcpus", "1",
			"--console", "unix:"+filepath.Join(hvDir, "console.sock"), "--control", filepath.Join(hvDir, "control.sock"),
			"--name", "bench", "--interface", "1.2")
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("hv: %v\n%s", err, out)
		}
		return nil
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hv, err := measure(benchRuns, direct)
		if err != nil {
			b.Fatal(err)
		}
		fg, err := measure(benchRuns, func() error { return e.benchRun("create", "-F", "-q", cfg) })
		if err != nil {
			b.Fatal(err)
		}
		// Timed: create until it returns; the destroy after it is not.
		var upRuns []time.Duration
		for j := 0; j < benchRuns; j++ {
			t0 := time.Now()
			if err := e.benchRun("create", "-q", upCfg); err != nil {
				b.Fatal(err)
			}
			upRuns = append(upRuns, time.Since(t0))
			if err := e.benchRun("destroy", "up"); err != nil {
				b.Fatal(err)
			}
		}
		up := summarize(upRuns)
		b.ReportMetric(float64(hv.median)/1e6, "ms/hv")
		b.ReportMetric(float64(fg.median)/1e6, "ms/xl-create-F")
		fmt.Printf("\ncreate overhead, micro-guest test/guests/shutdown.bin (%d runs each)\n", benchRuns)
		fmt.Printf("  %-44s %s\n", "peer: hv directly, start to exit", hv)
		fmt.Printf("  %-44s %s\n", "xl create -F, start to exit", fg)
		fmt.Printf("  %-44s %s\n", "xl create (detached), until domain up", up)
		fmt.Printf("  xl overhead (median): %.2f ms\n", float64(fg.median-hv.median)/1e6)
	}
}
