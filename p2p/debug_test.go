package p2p

import (
	"log/slog"
	"os"
)

var debugLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
