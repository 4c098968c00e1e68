"""Rule design: the validated sheet, the donor table and each contrast's groups (sscsig.design)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.config import blood_rows, load_sample_sheet, tissue_rows
    from sscsig.design import Design
    from sscsig.io import write_tsv

    p, o = snakemake.params, snakemake.output
    sheet = load_sample_sheet(snakemake.input.sheet, complications=p.complications, contrasts=p.contrasts,
                              baseline=p.baseline, tissues=p.tissues)
    write_tsv(tissue_rows(sheet), o.tissue_samples, config=snakemake.config, step="design")
    design = Design.from_sheet(blood_rows(sheet), contrasts=p.contrasts, complications=p.complications, batch_key=p.batch_key,
                               baseline=p.baseline)
    design.write(samples=o.samples, donors=o.donors, groups=o.groups, contrasts=o.contrasts, warnings=o.warnings,
                 config=snakemake.config)
