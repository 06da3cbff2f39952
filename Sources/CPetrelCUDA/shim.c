// SwiftPM needs a source file in a C target; the target exists for include/petrel_cuda.h only.
