//! Software prefetch, for the few hot-path loads that miss predictably: frames the kernel wrote
//! on another CPU and the client-index bucket of each request. Issued for a whole RX batch
//! before the first frame is handled, so the misses overlap instead of stalling one by one.

/// Starts loading the cache line holding `p` into this core's caches. Never faults, has no
/// effect on memory, and is a no-op on architectures without a prefetch intrinsic here.
#[inline(always)]
pub(crate) fn read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    hint::<{ std::arch::x86_64::_MM_HINT_T0 }, T>(p);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading the cache line holding `p` for writing (`prefetchw` where the CPU has it, else
/// a read prefetch): the write that follows then finds the line in this core's cache.
#[inline(always)]
pub(crate) fn write<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    hint::<{ std::arch::x86_64::_MM_HINT_ET0 }, T>(p);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hint<const HINT: i32, T>(p: *const T) {
    // SAFETY: a prefetch is only a hint: it never faults (any address is allowed) and changes no
    // memory.
    unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p.cast::<i8>()) };
}
