package netns

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// File is a namespace file with the identity (nsfs device, inode) it had
// when opened: Same tells whether its path still names that namespace. A
// link's idle reader asks once a second, so Same allocates nothing (where
// unix.Stat would make a C string of the path on every call: an allocation
// that a zero-allocation window counts whenever an idle second falls in it).
type File struct {
	cpath []byte // the path, NUL-terminated, made once
	id    [2]uint64
}

// OpenFile returns the namespace file of ns (see Path), or an error when
// there is none; ns must not be "".
func OpenFile(ns string) (*File, error) {
	p, err := unix.ByteSliceFromString(Path(ns))
	if err != nil {
		return nil, err
	}
	f := &File{cpath: p}
	if f.id, err = f.stat(); err != nil {
		return nil, err
	}
	return f, nil
}

// Same reports whether the path still names the namespace it named at
// OpenFile; err says why not when the path is gone.
func (f *File) Same() (bool, error) {
	id, err := f.stat()
	if err != nil {
		return false, err
	}
	return id == f.id, nil
}

// stat is stat(2) on the path: statx, whose result has one layout on every
// architecture, as a raw system call on the prepared path.
func (f *File) stat() ([2]uint64, error) {
	var st unix.Statx_t
	dirfd := unix.AT_FDCWD // negative: not a constant uintptr
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(&f.cpath[0])), 0, unix.STATX_INO, uintptr(unsafe.Pointer(&st)), 0)
	if errno != 0 {
		return [2]uint64{}, errno
	}
	return [2]uint64{unix.Mkdev(st.Dev_major, st.Dev_minor), st.Ino}, nil
}
