"""Reports: evaluation runs side by side, formatted tables, the self-contained HTML report and its
zip export, with secrets redacted from every byte. It reads every stage's results."""
