//! A list with a fixed capacity stored inline: the model's state has no heap
//! inside, so cloning a state is a copy and a search can keep states in flat
//! arrays.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

/// Up to `N` items of `T`, inline. Equality, hashing, ordering and `Debug` see
/// only the first `len` items, exactly like the `Vec` it replaces.
#[derive(Clone, Copy)]
pub struct Fixed<T: Copy, const N: usize> {
    len: u8,
    items: [T; N],
}

impl<T: Copy, const N: usize> Fixed<T, N> {
    /// `len` copies of `fill`; panics if `len > N` (the spec's bounds keep it within).
    pub fn filled(fill: T, len: usize) -> Self {
        assert!(len <= N, "{len} items do not fit a list of at most {N}");
        Fixed {
            len: len as u8,
            items: [fill; N],
        }
    }
}

impl<T: Copy, const N: usize> Deref for Fixed<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.len as usize]
    }
}

impl<T: Copy, const N: usize> DerefMut for Fixed<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items[..self.len as usize]
    }
}

impl<T: Copy + PartialEq, const N: usize> PartialEq for Fixed<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Copy + Eq, const N: usize> Eq for Fixed<T, N> {}

impl<T: Copy + Hash, const N: usize> Hash for Fixed<T, N> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (**self).hash(h)
    }
}

impl<T: Copy + fmt::Debug, const N: usize> fmt::Debug for Fixed<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn h<T: Hash>(t: &T) -> u64 {
        let mut s = DefaultHasher::new();
        t.hash(&mut s);
        s.finish()
    }

    #[test]
    fn behaves_as_the_vec_it_replaces() {
        let mut a: Fixed<u8, 4> = Fixed::filled(0, 2);
        a[1] = 7;
        let v = vec![0u8, 7];
        assert_eq!(&*a, &v[..]);
        assert_eq!(h(&a), h(&v));
        assert_eq!(format!("{a:?}"), format!("{v:?}"));
        let mut b: Fixed<u8, 4> = Fixed::filled(9, 2);
        assert_ne!(a, b);
        b[0] = 0;
        b[1] = 7;
        assert_eq!(a, b, "equal items are equal, whatever lies beyond len");
        assert_eq!(h(&a), h(&b));
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn refuses_more_than_its_capacity() {
        let _: Fixed<u8, 2> = Fixed::filled(0, 3);
    }
}
