package hv_test

import (
	"os"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
)

// Where /dev/kvm is missing, the tests that need it run inside the
// nested-KVM lab (kvmlab.Main).
func TestMain(m *testing.M) { os.Exit(kvmlab.Main(m)) }
