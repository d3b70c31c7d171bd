/// Frames and messages of the slmd socket protocol (placeholder until the protocol lands).
public enum SLMProtocolVersion { public static let current: UInt8 = 1 }
