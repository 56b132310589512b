#include "runner/gitinfo.h"

#include "lib/mem.h"
#include "lib/path.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *make_repo(void)
{
    char tmpl[] = "/tmp/harrier-git-XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    char *cmd =
        xasprintf("cd %s && git init -q -b main && git config user.name 'Mona Lisa' && "
                  "git config user.email m@example.com && mkdir -p src docs && echo a > src/a.c && "
                  "echo b > docs/b.md && git add . && git commit -qm one && echo c > src/a.c && "
                  "echo d > src/new.c && git add . && git commit -qm two && "
                  "git remote add origin git@github.com:octo-org/octo-repo.git",
                  tmpl);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    return xstrdup(tmpl);
}

Test(gitinfo, reads_branch_sha_remote_and_changed_files)
{
    char *dir = make_repo();
    char *sub = path_join(dir, "src");
    struct gitinfo info;
    struct error err = {0};
    cr_assert_eq(gitinfo_read(sub, &info, &err), 0, "%s", err.message);
    cr_assert_str_eq(info.workdir, dir);
    cr_assert_eq(strlen(info.sha), 40);
    cr_assert_str_eq(info.ref, "refs/heads/main");
    cr_assert_str_eq(info.ref_name, "main");
    cr_assert_str_eq(info.ref_type, "branch");
    cr_assert_str_eq(info.repository, "octo-org/octo-repo");
    cr_assert_str_eq(info.repository_owner, "octo-org");
    cr_assert_str_eq(info.server_url, "https://github.com");
    cr_assert_str_eq(info.actor, "Mona Lisa");
    cr_assert_eq(info.changed_count, 2);
    cr_assert_str_eq(info.changed_files[0], "src/a.c");
    cr_assert_str_eq(info.changed_files[1], "src/new.c");
    gitinfo_free(&info);
    struct error e2 = {0};
    path_remove_all(dir, &e2);
    free(sub);
    free(dir);
}

Test(gitinfo, detached_tag_is_the_ref)
{
    char *dir = make_repo();
    char *cmd = xasprintf("cd %s && git tag v1.2.3 && git checkout -q --detach HEAD", dir);
    cr_assert_eq(system(cmd), 0);
    struct gitinfo info;
    struct error err = {0};
    cr_assert_eq(gitinfo_read(dir, &info, &err), 0, "%s", err.message);
    cr_assert_str_eq(info.ref, "refs/tags/v1.2.3");
    cr_assert_str_eq(info.ref_type, "tag");
    cr_assert_str_eq(info.ref_name, "v1.2.3");
    gitinfo_free(&info);
    path_remove_all(dir, &err);
    free(cmd);
    free(dir);
}

Test(gitinfo, not_a_checkout_says_what_to_do)
{
    char tmpl[] = "/tmp/harrier-nogit-XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    struct gitinfo info;
    struct error err = {0};
    cr_assert_lt(gitinfo_read(tmpl, &info, &err), 0);
    cr_assert(strstr(err.message, "not inside a git checkout") != NULL, "%s", err.message);
    rmdir(tmpl);
}

Test(gitinfo, remote_url_shapes)
{
    const char *cases[][3] = {
        {"https://github.com/o/r.git", "https://github.com", "o/r"},
        {"https://ghes.example.com/team/tool", "https://ghes.example.com", "team/tool"},
        {"http://127.0.0.1:3000/o/r.git", "http://127.0.0.1:3000", "o/r"},
        {"git@github.com:o/r.git", "https://github.com", "o/r"},
        {"ssh://git@github.com:22/o/r.git", "https://github.com", "o/r"},
        {"https://user:pw@github.com/o/r/", "https://github.com", "o/r"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *server = NULL, *repo = NULL;
        cr_assert_eq(gitinfo_parse_remote(cases[i][0], &server, &repo), 0, "%s", cases[i][0]);
        cr_assert_str_eq(server, cases[i][1]);
        cr_assert_str_eq(repo, cases[i][2]);
        free(server);
        free(repo);
    }
    char *server = NULL, *repo = NULL;
    cr_assert_eq(gitinfo_parse_remote("/srv/git/repo", &server, &repo), -1);
    cr_assert_eq(gitinfo_parse_remote("https://github.com/onlyowner", &server, &repo), -1);
}
