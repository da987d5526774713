//go:build !linux

package loadgen

func newPreciseWaiter() waiter { return &timerWaiter{} }
