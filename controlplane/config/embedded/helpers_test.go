package embedded_test

import "time"

func afterMillis(n int) <-chan time.Time { return time.After(time.Duration(n) * time.Millisecond) }
