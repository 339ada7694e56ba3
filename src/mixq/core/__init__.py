"""Framework-free types: precisions, groups, assignments, tables, budgets, quality (numpy only)."""
