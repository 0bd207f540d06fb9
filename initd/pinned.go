package initd

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/abi"
)

// pinned is the guest interface this xeno-init was built against, as
// Xen guests pin __XEN_INTERFACE_VERSION__. The builder stamps it with
// -ldflags "-X github.com/xeno-hv/xeno/initd.pinned=1.2" (or
// "1.3-dev@BUILDID"); unstamped, it is the native interface of the
// release this binary was stamped as.
var pinned = ""

// Pinned returns the interface this binary is pinned to.
func Pinned() (abi.Interface, error) {
	if pinned == "" {
		b := abi.Current()
		in := b.Release.Interface()
		if in.Dev {
			in.BuildID = b.BuildID
		}
		return in, nil
	}
	in, err := abi.ParseInterface(pinned)
	if err != nil {
		return in, fmt.Errorf("xeno-init: bad pinned interface stamp: %w", err)
	}
	return in, nil
}
