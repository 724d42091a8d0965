// Streaming read bandwidth probe: each thread sums (wrapping u32) a strided slice of `data` as vec4
// loads and writes its partial sum; the host adds the partials. The best-case read bandwidth of the
// adapter, the yardstick for the matmul kernel's effective bandwidth.
//
// bindings: 0 params; 1 data: array<vec4<u32>> (count); 2 out: array<u32> (threads)
// dispatch: (groups)  with threads = groups * 256
struct Params { count: u32, threads: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  if (t >= p.threads) { return; }
  var acc = vec4<u32>(0u);
  for (var i = t; i < p.count; i += p.threads) { acc += data[i]; }
  out[t] = acc.x + acc.y + acc.z + acc.w;
}
