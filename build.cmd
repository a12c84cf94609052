@echo off
rem Microsoft.ML.LabelTuning build entry point on Windows: build.cmd [run|test|bench|build]
setlocal
set CONFIGURATION=Release
set CMD=%1
if "%CMD%"=="" set CMD=run
if "%CMD%"=="run" (
  dotnet run --project samples\Sentiment -c %CONFIGURATION%
) else if "%CMD%"=="test" (
  dotnet build test\Microsoft.ML.LabelTuning.Tests -c %CONFIGURATION% && dotnet test --project test\Microsoft.ML.LabelTuning.Tests -c %CONFIGURATION% --no-build --filter "TestCategory!=Slow"
  dotnet build test\Microsoft.ML.LabelTuning.Orleans.Tests -c %CONFIGURATION% && dotnet test --project test\Microsoft.ML.LabelTuning.Orleans.Tests -c %CONFIGURATION% --no-build --filter "TestCategory!=Slow"
) else if "%CMD%"=="bench" (
  dotnet run --project benchmarks\Microsoft.ML.LabelTuning.Benchmarks -c Release
) else (
  dotnet build Microsoft.ML.LabelTuning.sln -c %CONFIGURATION%
)
