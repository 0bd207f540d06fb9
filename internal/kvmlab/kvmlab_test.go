package kvmlab

import (
	"strings"
	"testing"
)

// The console a caller streams stops at the exit marker, whatever the
// write boundaries, and loses its carriage returns.
func TestUntilExit(t *testing.T) {
	in := "xeno-init: up\r\nhalf a li" + "ne\r\n" + exitMarker + "0\r\n[ 1.0] reboot: Power down\r\n"
	for split := 1; split < len(in); split++ {
		var b strings.Builder
		u := &untilExit{w: &b}
		u.Write([]byte(in[:split]))
		u.Write([]byte(in[split:]))
		if got, want := b.String(), "xeno-init: up\nhalf a line\n"; got != want {
			t.Fatalf("split at %d: %q, want %q", split, got, want)
		}
	}
}

func TestQueueAndArgs(t *testing.T) {
	tests, benches := queued("TestA/x\nTestA/y\nTestB\nBenchmarkC\nTestB\n")
	if strings.Join(tests, ",") != "TestA,TestB" || strings.Join(benches, ",") != "BenchmarkC" {
		t.Fatalf("queued: %v %v", tests, benches)
	}
	args := childArgs([]string{"-test.run=TestA", "-test.v=true", "-test.testlogfile", "/tmp/x", "-test.timeout=1m", "-test.bench=."})
	if strings.Join(args, " ") != "-test.v=true -test.timeout=1m" {
		t.Fatalf("childArgs: %q", args)
	}
	console := "--- PASS: TestA (1.0s)\n    --- PASS: TestB/sub (0.1s)\n--- SKIP: TestC (0.0s)\n=== RUN   TestB\n"
	if got := unfinished(console, []string{"TestA", "TestB", "TestC", "TestD"}, 1); strings.Join(got, ",") != "TestB,TestD" {
		t.Fatalf("unfinished: %v", got)
	}
	// With -count=2, a test that ran once of twice runs again.
	console = "--- PASS: TestA (1.0s)\n--- PASS: TestB (1.0s)\n--- PASS: TestA (1.0s)\n"
	if got := unfinished(console, []string{"TestA", "TestB"}, 2); strings.Join(got, ",") != "TestB" {
		t.Fatalf("unfinished, count 2: %v", got)
	}
}

// Which boots the lab lost and so run again, from consoles it printed.
func TestLostBoot(t *testing.T) {
	for _, c := range []struct {
		name, out string
		lost      bool
	}{
		{"silent until the bound (CI, 2026-12-02)", "[    2.083069] Last level dTLB entries: 4KB 512, 2MB 0, 4MB 0, 1GB 0\nhv: terminated: destroying the domain\nhv: domain ended: destroyed after 240.097 s\n", true},
		{"early triple fault", "[    2.7] x86: Booting SMP configuration:\nhv: crash: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN)\n", true},
		{"dead LAPIC timer", "[    1.9] APIC timer disabled due to verification failure\nhv: terminated: destroying the domain\n", true},
		// Past init, a hang is the test's to judge, never a rerun.
		{"bound after init", "[    0.51] Run /init as init process\nxeno-init: started\nhv: terminated: destroying the domain\n", false},
		{"triple fault after init", "[    0.51] Run /init as init process\nhv: crash: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN)\n", false},
		{"a panic before init", "[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\nhv: domain ended: crash\n", false},
	} {
		if got := lostBoot(c.out); got != c.lost {
			t.Errorf("%s: lostBoot = %v, want %v", c.name, got, c.lost)
		}
	}
}
