import CSLMKernels
import XCTest
@testable import SLMKernels
#if canImport(Glibc)
import Glibc
import SLMTestSupport
#endif

/// Timings of the quantized matmuls per path, through the public Swift entry point. Runs
/// only with SLMD_KERNEL_BENCH=1, and means something only in a release build:
///   SLMD_KERNEL_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter KernelBenchmarkTests
/// Decode shapes report GB/s of weights streamed, prefill shapes GOP/s (2·rows·cols·tokens).
final class KernelBenchmarkTests: XCTestCase {
    override func tearDown() { slm_kernels_force(Int32(SLM_PATH_AUTO)) }

    private func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    func testBenchmarkQuantizedMatmul() throws {
        guard ProcessInfo.processInfo.environment["SLMD_KERNEL_BENCH"] == "1" else {
            throw XCTSkip("set SLMD_KERNEL_BENCH=1 to run")
        }
        var rng = TestRNG(seed: 1)
        let shapes: [(type: WeightType, rows: Int, cols: Int, tokens: Int)] = [
            (.q4_1, 576, 1536, 1), (.q4_1, 1536, 576, 1), (.q8_0, 49152, 576, 1),
            (.q4_1, 1536, 576, 128), (.q4_1, 576, 1536, 128),
        ]
        for shape in shapes {
            let w = try RandomMatrix(type: shape.type, rows: shape.rows, cols: shape.cols, rng: &rng)
            let x = randomActivations(tokens: shape.tokens, cols: shape.cols, rng: &rng)
            var y = [Float](repeating: 0, count: shape.rows * shape.tokens)
            let ops = 2.0 * Double(shape.rows * shape.cols * shape.tokens)
            let bytes = Double(shape.rows * w.matrix.rowBytes)
            for path in supportedPaths() {
                slm_kernels_force(path.id)
                let reps = max(1, Int(2e7 / ops) / (path.name == "portable-c" ? 8 : 1))
                var times: [Double] = []
                for _ in 0..<9 {
                    let t0 = seconds()
                    for _ in 0..<reps {
                        Kernels.matmul(w.matrix, x, rows: 0..<shape.rows, y: &y, yStride: shape.rows)
                    }
                    times.append((seconds() - t0) / Double(reps))
                }
                let t = times.sorted()[times.count / 2]
                let rate = shape.tokens == 1
                    ? String(format: "%6.1f GB/s weights", bytes / t / 1e9)
                    : String(format: "%6.1f GOP/s", ops / t / 1e9)
                print(String(format: "bench %-18@ %@ %5dx%-5d tokens %3d: %9.1f us  %@",
                             path.name, shape.type.description, shape.rows, shape.cols, shape.tokens, t * 1e6, rate))
            }
        }
    }
}
