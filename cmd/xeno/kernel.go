package main

import "errors"

// Owned by the kernel-store work: replaced by the real command group.
func kernelCmd(args []string) error { return errors.New("kernel: not implemented yet") }
