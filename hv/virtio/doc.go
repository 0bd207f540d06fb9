// Package virtio emulates virtio devices on the virtio-mmio transport
// (version 2, "modern"), each with one split virtqueue: mmio.go is the
// transport (registers, status and feature negotiation, interrupts),
// queue.go the virtqueue, and a device type (block.go) implements Device.
//
// Everything the guest controls is bounded before use: the queue size, the
// ring addresses, every descriptor index, chain length and buffer, and the
// avail index; a device bounds what it reads from the buffers. A malformed
// ring puts the device in DEVICE_NEEDS_RESET and it stops processing until
// the driver resets it; a bad request inside a well-formed chain completes
// with the device's error status. No guest value can make the hv panic or
// touch memory outside guest RAM.
package virtio
