/// Protocol version constants (docs/PROTOCOL.md, "Version history").
public enum SLMProtocolVersion {
    /// The version this build writes in every frame header and the only one it reads.
    /// A frame with another version is rejected with the fatal `unsupported_version`.
    public static let current: UInt8 = 1
}
