// Package devstate encodes a device's saved state as a snapshot section
// holds it (hv/snapshot, docs/snapshot.md): a small JSON object with a
// version, decoded strictly. It bounds nothing about the device itself:
// each device checks the values it gets against its own limits.
package devstate

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Max bounds one encoded state: the largest, a vCPU's, holds an XSAVE
// area of up to 64 KiB (kvm.MaxXSave) in base64, and the MSRs.
const Max = 1 << 20

// Encode marshals state, a struct pointer whose first field is the
// version (`json:"version"`).
func Encode(kind string, state any) ([]byte, error) {
	b, err := json.Marshal(state)
	if err != nil {
		return nil, fmt.Errorf("%s state: %w", kind, err)
	}
	return b, nil
}

// Decode reads b into state after checking it is version want; an
// unknown field, trailing data or a wrong type is an error naming the
// device kind.
func Decode(kind string, b []byte, want int, state any) error {
	if len(b) > Max {
		return fmt.Errorf("%s state: %d bytes, at most %d", kind, len(b), Max)
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s state: %w", kind, err)
	}
	if v.Version == nil {
		return fmt.Errorf("%s state: no version", kind)
	}
	if *v.Version != want {
		return fmt.Errorf("%s state: version %d, this hv reads %d", kind, *v.Version, want)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(state); err != nil {
		return fmt.Errorf("%s state: %w", kind, err)
	}
	return nil
}
