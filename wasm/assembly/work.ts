// The parameter block and the work queue: typed reads of parameter slots (`P_*`, from the
// generated ./abi) and the atomic counter threads take work items from.

@inline export function pi(p: usize, slot: i32): i32 {
  return load<i32>(p + (<usize>slot << 2));
}

@inline export function pu(p: usize, slot: i32): usize {
  return <usize>load<u32>(p + (<usize>slot << 2));
}

@inline export function pf(p: usize, slot: i32): f32 {
  return load<f32>(p + (<usize>slot << 2));
}

/** Takes the next work item index, or −1 when all are taken. */
@inline export function nextItem(counter: usize, items: usize, nItems: i32): i32 {
  const idx = atomic.add<i32>(counter, 1);
  return idx < nItems ? load<i32>(items + (<usize>idx << 2)) : -1;
}
