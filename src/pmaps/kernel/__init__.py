"""The only code in pmaps that opens /proc or /sys, or calls ioctl."""
