//! Process limits: the open-file limit decides how many connections fit.

/// Descriptors kept back for the listener, epoll, the waker, the signal
/// pipe, the spare descriptor, worker threads and logging.
const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard limit; returns the new soft
/// limit (or the old one if raising was refused).
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// How many client connections the current soft open-file limit allows.
pub fn connection_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed in.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            1024
        } else {
            lim.rlim_cur
        }
    };
    soft.saturating_sub(RESERVED_FDS).max(1) as usize
}
