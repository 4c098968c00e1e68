"""Rule design: the validated sheet, the donor table and each contrast's groups (sscsig.design)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.config import load_sample_sheet
    from sscsig.design import Design

    p, o = snakemake.params, snakemake.output
    sheet = load_sample_sheet(snakemake.input.sheet, complications=p.complications, contrasts=p.contrasts,
                              baseline=p.baseline)
    design = Design.from_sheet(sheet, contrasts=p.contrasts, complications=p.complications, batch_key=p.batch_key,
                               baseline=p.baseline)
    design.write(samples=o.samples, donors=o.donors, groups=o.groups, contrasts=o.contrasts, warnings=o.warnings,
                 config=snakemake.config)
