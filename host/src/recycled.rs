//! Boxed futures whose memory their thread reuses: [`Recycled`].
//!
//! Every request makes two large futures that must live on the heap: the service's (hyper
//! needs one it can move) and the member exchange's (behind the `Upstream` trait). At about
//! 3.4 and 2 KB they are beyond glibc's per-thread cache (1 KiB), so a `Box::pin` of each took
//! its arena's slow path twice per request, which costs more the more requests are in flight
//! (measured: no difference at 32 connections, 4 % of keel's user CPU at 256).
//!
//! A [`Recycled`] future lives in a block of a size class (multiples of 256 bytes up to
//! 8 KiB); when it is dropped the block goes on its thread's free list for that class (at most
//! [`KEPT`] blocks, the rest are freed), and the thread's next future of that class takes it.
//! keel's workers are single-threaded runtimes, so a request's futures are made and dropped on
//! the same thread; a block freed on another thread simply joins that thread's list (they all
//! come from the global allocator). Larger or over-aligned futures are allocated and freed
//! each time, as a `Box` would.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Block sizes are multiples of this.
const GRAIN: usize = 256;
/// Size classes: blocks of `GRAIN` up to `GRAIN * CLASSES` bytes (8 KiB).
const CLASSES: usize = 32;
/// Every block's alignment (a future that needs more is not recycled).
const ALIGN: usize = 16;
/// Free blocks a thread keeps per class: a burst of that many requests finishing together
/// needs no allocation when the next burst starts. At most 64 × 4 KiB = 256 KiB per worker for
/// the service's class.
pub const KEPT: usize = 64;

/// The class of a future of `layout`, if it is recycled.
const fn class_of(layout: Layout) -> Option<usize> {
    let size = if layout.size() == 0 { 1 } else { layout.size() };
    if layout.align() > ALIGN || size > GRAIN * CLASSES {
        None
    } else {
        Some((size - 1) / GRAIN)
    }
}

/// The layout of a block of `class`.
const fn block_layout(class: usize) -> Layout {
    match Layout::from_size_align((class + 1) * GRAIN, ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("a block layout is a multiple of 256 bytes up to 8 KiB, aligned to 16"),
    }
}

/// The layout of a future that is not recycled: its own, at least one byte (only an
/// over-aligned zero-sized future is not recycled and has none).
const fn unrecycled_layout(layout: Layout) -> Layout {
    if layout.size() > 0 {
        return layout;
    }
    match Layout::from_size_align(1, layout.align()) {
        Ok(layout) => layout,
        Err(_) => panic!("one byte at a valid alignment is a valid layout"),
    }
}

/// A thread's free blocks, by class.
struct FreeLists([Vec<NonNull<u8>>; CLASSES]);

impl Drop for FreeLists {
    fn drop(&mut self) {
        for (class, list) in self.0.iter_mut().enumerate() {
            for block in list.drain(..) {
                // SAFETY: every block on the list of `class` was allocated by the global
                // allocator with `block_layout(class)` and is owned by the list alone.
                #[allow(unsafe_code)]
                unsafe {
                    alloc::dealloc(block.as_ptr(), block_layout(class));
                }
            }
        }
    }
}

thread_local! {
    static FREE: RefCell<FreeLists> =
        RefCell::new(FreeLists(std::array::from_fn(|_| Vec::new())));
}

/// A block for a future of `layout` (and `class`): a free one of the class, or a new one.
fn take(class: Option<usize>, layout: Layout) -> NonNull<u8> {
    if let Some(class) = class {
        let free = FREE.try_with(|lists| lists.try_borrow_mut().ok()?.0[class].pop());
        if let Ok(Some(block)) = free {
            return block;
        }
    }
    // SAFETY: `layout` is never zero-sized: a block's is at least 256 bytes, an unrecycled
    // future's at least one (`unrecycled_layout`).
    #[allow(unsafe_code)]
    let block = unsafe { alloc::alloc(layout) };
    NonNull::new(block).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Hands back a block that held a future of `layout` (and `class`), its future dropped.
fn give_back(class: Option<usize>, block: NonNull<u8>, layout: Layout) {
    if let Some(class) = class {
        let kept = FREE.try_with(|lists| {
            let Ok(mut lists) = lists.try_borrow_mut() else {
                return false;
            };
            let list = &mut lists.0[class];
            if list.len() >= KEPT {
                return false;
            }
            list.push(block);
            true
        });
        if kept == Ok(true) {
            return;
        }
    }
    // SAFETY: `block` was allocated by the global allocator with `layout` (`take`), and its
    // owner gave it up.
    #[allow(unsafe_code)]
    unsafe {
        alloc::dealloc(block.as_ptr(), layout);
    }
}

/// What a [`Recycled`] future needs to know about the future it holds.
struct VTable<O> {
    poll: unsafe fn(NonNull<u8>, &mut Context<'_>) -> Poll<O>,
    drop: unsafe fn(NonNull<u8>),
    class: Option<usize>,
    layout: Layout,
}

/// The [`VTable`] of future type `F`, one `'static` per type.
struct Of<F>(PhantomData<F>);

impl<F: Future> Of<F> {
    const CLASS: Option<usize> = class_of(Layout::new::<F>());
    const VTABLE: VTable<F::Output> = VTable {
        poll: poll_in::<F>,
        drop: drop_in::<F>,
        class: Self::CLASS,
        layout: match Self::CLASS {
            Some(class) => block_layout(class),
            None => unrecycled_layout(Layout::new::<F>()),
        },
    };
}

/// Polls the `F` in `block`.
///
/// # Safety
///
/// `block` holds a live `F` that stays at that address until it is dropped (a `Recycled`'s).
#[allow(unsafe_code)]
unsafe fn poll_in<F: Future>(block: NonNull<u8>, cx: &mut Context<'_>) -> Poll<F::Output> {
    // SAFETY: by the contract, the `F` is live, not moved before it is dropped (pinned), and
    // reached only through its `Recycled`, borrowed mutably for this call.
    let future = unsafe { Pin::new_unchecked(&mut *block.cast::<F>().as_ptr()) };
    future.poll(cx)
}

/// Drops the `F` in `block`.
///
/// # Safety
///
/// `block` holds a live `F`, which nothing uses afterwards.
#[allow(unsafe_code)]
unsafe fn drop_in<F>(block: NonNull<u8>) {
    // SAFETY: by the contract.
    unsafe {
        block.cast::<F>().as_ptr().drop_in_place();
    }
}

/// A future on the heap, in a block its thread reuses (see the module docs). What
/// `Pin<Box<dyn Future<Output = O> + Send>>` is, without an allocation per future in the
/// steady state.
pub struct Recycled<O: 'static> {
    block: NonNull<u8>,
    vtable: &'static VTable<O>,
}

// SAFETY: `new` only takes `Send` futures, and a `Recycled` gives access to its future only
// through `&mut self` (poll, drop): moving it to another thread moves the future with it.
#[allow(unsafe_code)]
unsafe impl<O: 'static> Send for Recycled<O> {}

impl<O: 'static> Recycled<O> {
    /// `future` on the heap, in a block of its size class.
    pub fn new<F: Future<Output = O> + Send + 'static>(future: F) -> Self {
        let vtable: &'static VTable<O> = &Of::<F>::VTABLE;
        let block = take(vtable.class, vtable.layout);
        // SAFETY: the block is at least `size_of::<F>()` bytes, aligned for `F` (`class_of`
        // recycles only futures aligned to at most 16, and an unrecycled one gets its own
        // layout), and holds nothing.
        #[allow(unsafe_code)]
        unsafe {
            block.cast::<F>().as_ptr().write(future);
        }
        Self { block, vtable }
    }
}

impl<O: 'static> Future for Recycled<O> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        // SAFETY: the block holds the live future `new` wrote, of the type of this vtable; it
        // stays there until `drop`.
        #[allow(unsafe_code)]
        unsafe {
            (self.vtable.poll)(self.block, cx)
        }
    }
}

impl<O: 'static> Drop for Recycled<O> {
    fn drop(&mut self) {
        // SAFETY: the block holds the live future `new` wrote, of the type of this vtable, and
        // nothing uses it after this (the block goes back empty).
        #[allow(unsafe_code)]
        unsafe {
            (self.vtable.drop)(self.block);
        }
        give_back(self.vtable.class, self.block, self.vtable.layout);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use super::*;

    /// Polls `future` once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Counts its drops; holds `N` bytes.
    struct Counted<const N: usize> {
        drops: Arc<AtomicUsize>,
        bytes: [u8; N],
    }

    impl<const N: usize> Drop for Counted<N> {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted<const N: usize>(drops: &Arc<AtomicUsize>) -> Recycled<usize> {
        let held = Counted::<N> {
            drops: drops.clone(),
            bytes: [7; N],
        };
        Recycled::new(async move {
            tokio::task::yield_now().await;
            held.bytes.iter().map(|&b| usize::from(b)).sum()
        })
    }

    fn free_in(class: usize) -> usize {
        FREE.with(|lists| lists.borrow().0[class].len())
    }

    #[test]
    fn a_future_runs_to_its_output_and_is_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut future = counted::<3000>(&drops);
        assert!(poll_once(&mut future).is_pending());
        assert_eq!(poll_once(&mut future), Poll::Ready(7 * 3000));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped when the async block ended"
        );
        drop(future);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "not dropped twice");

        // A future dropped before it ends drops what it holds.
        let pending = counted::<3000>(&drops);
        drop(pending);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_next_future_of_a_class_takes_the_block_of_the_last() {
        let drops = Arc::new(AtomicUsize::new(0));
        let first = counted::<3000>(&drops);
        let block = first.block;
        let class = first
            .vtable
            .class
            .unwrap_or_else(|| panic!("3 KB is recycled"));
        let before = free_in(class);
        drop(first);
        assert_eq!(free_in(class), before + 1);
        let second = counted::<2900>(&drops);
        assert_eq!(second.block, block, "same class, same block");
        assert_eq!(free_in(class), before);
        // Another class does not take it.
        drop(second);
        let small = counted::<100>(&drops);
        assert_ne!(small.block, block);
        assert_eq!(free_in(class), before + 1);
    }

    #[test]
    fn a_thread_keeps_at_most_kept_blocks_per_class() {
        let drops = Arc::new(AtomicUsize::new(0));
        let many: Vec<_> = (0..KEPT + 10).map(|_| counted::<5000>(&drops)).collect();
        let class = many[0]
            .vtable
            .class
            .unwrap_or_else(|| panic!("5 KB is recycled"));
        drop(many);
        assert_eq!(free_in(class), KEPT);
        assert_eq!(drops.load(Ordering::SeqCst), KEPT + 10);
    }

    #[test]
    fn large_over_aligned_and_zero_sized_futures_work_unrecycled_or_in_the_smallest_class() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut large = counted::<20_000>(&drops);
        assert_eq!(large.vtable.class, None);
        assert!(poll_once(&mut large).is_pending());
        assert_eq!(poll_once(&mut large), Poll::Ready(7 * 20_000));

        #[repr(align(64))]
        struct Aligned(u8);
        let aligned = Aligned(5);
        let mut future = Recycled::new(async move {
            // The whole value (a field alone would be captured by itself).
            let whole = aligned;
            usize::from(whole.0)
        });
        assert_eq!(future.vtable.class, None);
        assert_eq!(future.block.as_ptr() as usize % 64, 0);
        assert_eq!(poll_once(&mut future), Poll::Ready(5));

        let mut empty = Recycled::new(std::future::pending::<usize>());
        assert_eq!(size_of::<std::future::Pending<usize>>(), 0);
        assert_eq!(empty.vtable.class, Some(0));
        assert!(poll_once(&mut empty).is_pending());

        // Zero-sized and over-aligned: its own block, of one byte.
        #[repr(align(64))]
        struct Nothing;
        impl Future for Nothing {
            type Output = usize;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
                Poll::Ready(3)
            }
        }
        let mut nothing = Recycled::new(Nothing);
        assert_eq!(nothing.vtable.class, None);
        assert_eq!(nothing.vtable.layout.size(), 1);
        assert_eq!(nothing.block.as_ptr() as usize % 64, 0);
        assert_eq!(poll_once(&mut nothing), Poll::Ready(3));
    }

    #[tokio::test]
    async fn a_future_awaited_on_a_runtime() {
        let drops = Arc::new(AtomicUsize::new(0));
        assert_eq!(counted::<1000>(&drops).await, 7 * 1000);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
