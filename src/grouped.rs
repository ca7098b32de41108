//! Items grouped by key in compressed sparse rows: for each key, the items holding it,
//! ascending. Used for the rows of each series of an in-memory chunk and for the series
//! runs holding each tag value of a file.

/// `offsets[k]..offsets[k + 1]` is the range of `items` holding key `k`.
#[derive(Debug, Default)]
pub struct Grouped {
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl Grouped {
    /// Item `i` has key `keys[i]`, for keys below `n` (larger keys are left out).
    pub fn new(n: usize, keys: impl Iterator<Item = u32> + Clone) -> Grouped {
        let mut offsets = vec![0u32; n + 1];
        for k in keys.clone() {
            if let Some(o) = offsets.get_mut(k as usize + 1).filter(|_| (k as usize) < n) {
                *o += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut items = vec![0u32; offsets[n] as usize];
        for (i, k) in keys.enumerate() {
            if let Some(at) = next.get_mut(k as usize).filter(|_| (k as usize) < n) {
                items[*at as usize] = i as u32;
                *at += 1;
            }
        }
        Grouped { offsets, items }
    }

    /// The items holding key `k`, ascending (empty for a key with none, or out of range).
    pub fn get(&self, k: usize) -> &[u32] {
        match (
            self.offsets.get(k),
            k.checked_add(1).and_then(|j| self.offsets.get(j)),
        ) {
            (Some(&a), Some(&b)) => self.items.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.offsets.len() + self.items.len()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_items_by_key_in_order() {
        let keys = [2u32, 0, 2, u32::MAX, 1, 2, 7];
        let g = Grouped::new(3, keys.iter().copied());
        assert_eq!(g.get(0), &[1]);
        assert_eq!(g.get(1), &[4]);
        assert_eq!(g.get(2), &[0, 2, 5]);
        assert!(g.get(3).is_empty() && g.get(usize::MAX).is_empty());
        let empty = Grouped::new(0, std::iter::empty());
        assert!(empty.get(0).is_empty());
    }
}
