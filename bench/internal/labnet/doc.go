// Package labnet holds what the lab programs of bench/cmd (bareforward,
// gvisorrouter) share to reach the devices scripts/lab.sh makes; it is
// Linux only (network namespaces, TUN devices).
package labnet
