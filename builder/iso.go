package builder

import (
	"errors"

	"github.com/xeno-hv/xeno/images"
)

// writeISO is images.WriteISO once the images package has it.
func writeISO(path string, spec images.BootSpec) error {
	return errors.New("builder: iso output: images.WriteISO is not available in this tree yet")
}
