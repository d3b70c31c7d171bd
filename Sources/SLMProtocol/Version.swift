/// Protocol version constants (docs/PROTOCOL.md, "Version history").
public enum SLMProtocolVersion {
    /// The version this build writes in every frame header and the only one it reads.
    /// A frame with another version is rejected with the fatal `unsupported_version`.
    public static let current: UInt8 = 1
}

/// The software version of slmd and slmctl (one release, one number): the daemon reports
/// it in `hello`/`info`/`status`, `slmctl --version` prints it, and scripts/build-deb reads
/// it from this line for the package version. It lives here because this is the one
/// module both programs link.
public enum SLMDVersion {
    public static let string = "0.1.0"
}
