package toolstack

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An hv killed by its seccomp filter (SIGSYS) is reported as such, not
// as a bare signal: the operator learns it broke its jail.
func TestExitReasonSeccomp(t *testing.T) {
	waitErr := exec.Command("sh", "-c", "kill -SYS $$").Run()
	reason, detail := exitReason(filepath.Join(t.TempDir(), "control.sock"), time.Now(), waitErr)
	if reason != "killed" || !strings.HasPrefix(detail, "hv killed by seccomp (SIGSYS)") {
		t.Fatalf("exitReason = %q, %q; want killed by seccomp", reason, detail)
	}
	waitErr = exec.Command("sh", "-c", "kill -KILL $$").Run()
	if _, detail := exitReason(filepath.Join(t.TempDir(), "control.sock"), time.Now(), waitErr); detail != "hv killed by signal killed" {
		t.Fatalf("SIGKILL detail %q", detail)
	}
}
