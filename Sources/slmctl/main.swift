import SLMProtocol
print("slmctl: not implemented yet")
