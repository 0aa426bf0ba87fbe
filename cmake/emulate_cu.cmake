# Rewrites a .cu file for the CUDA emulator (tests/cuda_emulator): every
# kernel launch `name<<<config>>>(args)` becomes
# `::nnemu::launch(name, "name", config)(args)`, which g++ compiles.
# Usage: cmake -DINPUT=file.cu -DOUTPUT=file.cpp -P emulate_cu.cmake
file(READ ${INPUT} text)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_]*)<<<" "::nnemu::launch(\\1, \"\\1\", " text "${text}")
string(REPLACE ">>>" ")" text "${text}")
file(WRITE ${OUTPUT}.tmp "#line 1 \"${INPUT}\"\n${text}")
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUTPUT}.tmp)
